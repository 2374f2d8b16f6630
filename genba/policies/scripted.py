"""The scripted experts of genba's simulated tasks as policies (genba.sim.experts, behind the policy contract).

They read the joint state and the object poses (`observation.environment_state`, LeRobot's name for privileged
state) and answer one action per step (H = 1). An expert keeps a phase per episode: `reset()` starts a new one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genba import keys
from genba.policies.spec import ActionSpec, Feature, InputSpec

STATE_DIM = len(keys.JOINTS)


class ScriptedPolicy:
    """The expert of `task`; noise=sigma adds N(0, sigma^2) rad to the arm joint targets (recovery data, or a weaker
    policy of known quality). The noise generator: seeded once from `seed` when given (collect builds one policy per
    episode); with seed=None, drawn at each `reset()` from NumPy's global generator, which `genba eval` seeds from
    each episode's seed, so an outcome depends on that seed alone, never on the episodes run before it."""

    def __init__(self, task: str, noise: float = 0.0, seed: int | None = None, fps: int = 10) -> None:
        from genba.sim.experts import make_expert
        from genba.sim.scene import ENV_STATE_DIM

        self.name = f"scripted:{task}" + (f":noise={noise:g}" if noise else "")
        self.task = task
        self.expert = make_expert(task, noise=noise, seed=seed, fps=fps)
        self._reseed = seed is None and noise > 0
        self.input_spec = InputSpec(
            {
                keys.OBS_STATE: Feature("float32", (STATE_DIM,), description="joint positions (rad, gripper m)"),
                keys.OBS_ENV_STATE: Feature(
                    "float32", (ENV_STATE_DIM,), description="object poses: slots of pos(3)+quat wxyz(4)"
                ),
                keys.TASK: Feature("str", required=False, description="instruction (the expert ignores it)"),
            }
        )
        self.action_spec = ActionSpec(horizon=1, dim=STATE_DIM, fps=float(fps), units="rad (gripper: m)")

    def reset(self) -> None:
        self.expert.reset()
        if self._reseed:
            self.expert.rng = np.random.default_rng(np.random.randint(0, 2**32))

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        env_obs = {keys.AGENT_POS: obs[keys.OBS_STATE], keys.ENV_STATE: obs[keys.OBS_ENV_STATE]}
        return {keys.ACTIONS: np.asarray(self.expert.act(env_obs), dtype=np.float32).reshape(1, STATE_DIM)}
