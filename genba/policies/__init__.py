"""genba.policies: the policy contract, the one episode loop, and the policies genba ships.

spec.py       what a policy reads and emits, as data (InputSpec, Feature, ActionSpec)
contract.py   the Policy protocol: reset() + infer(obs) -> {"actions": (H, A)}; optional infer_batch
broker.py     the chunk broker: one action per control step from action chunks (n_action_steps, blending)
rollout.py    the one episode loop (run_episode) and rollout(env, policy, seed) for genba's simulated tasks
registry.py   policies by name (scripted, linear, hold, random) or `module.path:ClassName`
scripted.py   the scripted experts of the simulated tasks as policies
simple.py     linear, hold and random policies
"""
