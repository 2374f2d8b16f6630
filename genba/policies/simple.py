"""Policies with known outputs, for bringing up an arm, testing and benchmarking: linear, hold, random.

- `linear`: a fixed, seeded linear map of the state (plus the mean brightness of each image); batched. A real
  policy whose outputs are known, for tests and `genba bench serve`.
- `hold`: holds the measured position; the safe first policy when bringing up a new arm.
- `random`: uniform joint targets within the arm's limits (a floor for success rates), drawn from a generator
  reseeded at each `reset()` from NumPy's global one: in genba eval and collect, a function of the episode's seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genba import keys
from genba.policies.spec import ActionSpec, Feature, InputSpec

STATE_DIM = len(keys.JOINTS)


def image_features(cameras: list[str], image_size: int) -> dict[str, Feature]:
    shape = (image_size, image_size, 3)
    return {keys.image_key(c): Feature("uint8", shape, description=f"{c} camera, RGB") for c in cameras}


class LinearPolicy:
    """actions[h] = state + (h + 1) * (W @ state + b + c * image brightness): deterministic, cheap, batched."""

    def __init__(self, cameras: list[str] | tuple[str, ...] = (), image_size: int = 224, horizon: int = 10,
                 seed: int = 0, fps: float = 10.0) -> None:  # fmt: skip
        rng = np.random.default_rng(seed)
        self.name = "linear"
        self.cameras = list(cameras)
        self.weight = (rng.standard_normal((STATE_DIM, STATE_DIM)) * 0.01).astype(np.float32)  # (A, S)
        self.bias = (rng.standard_normal(STATE_DIM) * 0.01).astype(np.float32)  # (A,)
        self.image_gain = (rng.standard_normal((len(self.cameras), STATE_DIM)) * 0.01).astype(np.float32)  # (C, A)
        self.input_spec = InputSpec(
            {
                keys.OBS_STATE: Feature("float32", (STATE_DIM,), description="joint positions"),
                **image_features(self.cameras, image_size),
                keys.TASK: Feature("str", required=False, description="instruction (ignored)"),
            }
        )
        self.action_spec = ActionSpec(horizon=horizon, dim=STATE_DIM, fps=fps)

    def reset(self) -> None:
        pass

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.infer_batch([obs])[0]

    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        state = np.stack([o[keys.OBS_STATE] for o in batch]).astype(np.float32)  # (B, S)
        step = state @ self.weight.T + self.bias  # (B, A)
        if self.cameras:
            bright = np.array(
                [[o[keys.image_key(c)].mean(dtype=np.float32) / 255.0 for c in self.cameras] for o in batch],
                dtype=np.float32,
            )  # (B, C)
            step = step + bright @ self.image_gain
        h = np.arange(1, self.action_spec.horizon + 1, dtype=np.float32)  # (H,)
        chunks = state[:, None, :] + h[None, :, None] * step[:, None, :]  # (B, H, A)
        return [{keys.ACTIONS: c} for c in chunks.astype(np.float32)]


class HoldPolicy(LinearPolicy):
    """Every action is the measured position: the arm stays where it is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "hold"
        self.weight[:] = 0.0
        self.bias[:] = 0.0
        self.image_gain[:] = 0.0


class RandomPolicy:
    """Uniform joint targets in [low, high] (A,), one per step. The generator: seeded once from `seed` when given
    (one stream over the episodes); with seed=None (the registry's `random`), drawn at each `reset()` from NumPy's
    global generator, which the episode loop's callers seed from each episode's seed (seed_everything), so an
    episode's actions depend on its seed alone, never on the episodes a process ran before it or its batch slot."""

    def __init__(
        self, low: np.ndarray, high: np.ndarray, horizon: int = 1, seed: int | None = None, fps: float = 10.0
    ) -> None:
        self.name = "random"
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)  # (A,)
        self.rng = np.random.default_rng(seed)
        self._reseed = seed is None
        self.input_spec = InputSpec({keys.TASK: Feature("str", required=False, description="instruction (ignored)")})
        self.action_spec = ActionSpec(horizon=horizon, dim=len(self.low), fps=fps)

    def reset(self) -> None:
        if self._reseed:
            self.rng = np.random.default_rng(np.random.randint(0, 2**32))

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        shape = (self.action_spec.horizon, len(self.low))
        return {keys.ACTIONS: self.rng.uniform(self.low, self.high, shape).astype(np.float32)}  # (H, A)
