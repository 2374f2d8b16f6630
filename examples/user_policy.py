"""Your own policy class, served and evaluated by genba with one override each (this folder on PYTHONPATH):

    PYTHONPATH=examples genba eval task=reach policy=user_policy:Homing episodes=5
    PYTHONPATH=examples genba serve policy=user_policy:Homing

A policy is any class with `input_spec`, `action_spec`, `reset()` and `infer(obs) -> {"actions": (H, A)}`
(genba.policies.contract). genba passes its constructor the options it names (here `horizon`), gives `infer` only
the observation keys the input spec lists, checked, and executes the chunk it returns.
"""

import numpy as np

from genba import keys
from genba.policies.spec import ActionSpec, Feature, InputSpec

HOME = np.array([0.0, -0.4, 0.8, 0.6, 0.0, 0.02], dtype=np.float32)


class Homing:
    """Moves every joint a fraction of the way home per step: a chunk of `horizon` targets."""

    def __init__(self, horizon: int = 4, gain: float = 0.25) -> None:
        self.gain = gain
        self.input_spec = InputSpec(
            {keys.OBS_STATE: Feature("float32", (6,)), keys.TASK: Feature("str", required=False)}
        )
        self.action_spec = ActionSpec(horizon=horizon, dim=6, fps=10.0)
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def infer(self, obs: dict) -> dict:
        state = np.asarray(obs[keys.OBS_STATE], dtype=np.float32)
        rows, q = [], state
        for _ in range(self.action_spec.horizon):
            q = q + self.gain * (HOME - q)
            rows.append(q)
        return {keys.ACTIONS: np.stack(rows).astype(np.float32)}  # (H, 6)
