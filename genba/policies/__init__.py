"""genba.policies: the policy contract, the one episode loop, and the policies genba ships.

spec.py       what a policy reads and emits, as data (InputSpec, Feature, ActionSpec)
contract.py   the Policy protocol: reset() + infer(obs) -> {"actions": (H, A)}; optional infer_batch
broker.py     the chunk broker: one action per control step from action chunks (n_action_steps, blending)
rollout.py    the one episode loop (run_episode) and rollout(env, policy, seed) for genba's simulated tasks
registry.py   policies by name (scripted, linear, hold, random), a VLA run folder, `lerobot:<checkpoint>` or
              `module.path:ClassName`
scripted.py   the scripted experts of the simulated tasks as policies
simple.py     linear, hold and random policies
vla.py        the VLA: flow-matching (or L1) action chunks on the shared language-vision backbone
vla_policy.py a trained VLA run as a policy (input and action specs from its checkpoint)
train_command.py  `genba train-policy` (presets/tiny.yaml, tiny-locate.yaml, small.yaml); bench.py: `genba bench policy`
evaluate.py   `genba eval`: success with Wilson intervals, per language, latency, compare=, grounding=, rrd=
eval_worker.py    the evaluation's worker processes (one episode per job, seeded by its seed)
stats.py      Wilson, Newcombe's paired interval, exact McNemar
lerobot.py    LeRobot checkpoints (with their processors) as policies
baseline.py   `genba baseline`: LeRobot's ACT / Diffusion Policy trained by lerobot-train
"""
