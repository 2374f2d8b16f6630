"""The policies `genba serve` can serve, behind one small interface.

A served policy has `input_spec` (what it reads, checked by the server before `infer` sees anything), `action_spec`,
`reset()` and `infer(obs) -> {"actions": (H, A) float32}`; `infer_batch(list of obs)` when `max_batch > 1`.
A stateful policy (the scripted experts keep a phase per episode) sets `per_connection = True` and the server makes
one instance per client, so two arms never share an episode's state.

- `scripted`: genba's scripted expert of a task (genba.sim.experts), reading `observation.state` and
  `observation.environment_state` (object poses, LeRobot's name for privileged state).
- `linear`: a fixed, seeded linear map of the state (plus the mean brightness of each image), batched; a real
  policy with known outputs, for tests and `genba bench serve`.
- `hold`: holds the measured position; the safe first policy when bringing up a new arm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.serving.protocol import RESET, ActionSpec, Feature, InputSpec

STATE_DIM = len(keys.JOINTS)


class Policy(Protocol):
    name: str
    input_spec: InputSpec
    action_spec: ActionSpec
    max_batch: int  # 1: no batching
    per_connection: bool  # True: stateful, one instance per client

    def reset(self) -> None: ...

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]: ...  # {"actions": (H, A)}

    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]: ...


def _image_features(cameras: list[str], image_size: int) -> dict[str, Feature]:
    shape = (image_size, image_size, 3)
    return {keys.image_key(c): Feature("uint8", shape, description=f"{c} camera, RGB") for c in cameras}


class LinearPolicy:
    """actions[h] = state + (h + 1) * (W @ state + b + c * image brightness): deterministic, cheap, batched."""

    per_connection = False

    def __init__(
        self,
        cameras: list[str] | tuple[str, ...] = (),
        image_size: int = 224,
        horizon: int = 10,
        max_batch: int = 16,
        seed: int = 0,
        fps: float = 10.0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.name = "linear"
        self.cameras = list(cameras)
        self.weight = (rng.standard_normal((STATE_DIM, STATE_DIM)) * 0.01).astype(np.float32)  # (A, S)
        self.bias = (rng.standard_normal(STATE_DIM) * 0.01).astype(np.float32)  # (A,)
        self.image_gain = (rng.standard_normal((len(self.cameras), STATE_DIM)) * 0.01).astype(np.float32)  # (C, A)
        self.max_batch = max_batch
        self.input_spec = InputSpec(
            {
                keys.OBS_STATE: Feature("float32", (STATE_DIM,), description="joint positions"),
                **_image_features(self.cameras, image_size),
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


class ScriptedPolicy:
    """genba's scripted expert for one task, served. Stateful (expert phases), so one per connection."""

    per_connection = True
    max_batch = 1

    def __init__(self, task: str, env_state_dim: int, fps: float) -> None:
        from genba.sim.experts import make_expert

        self.name = f"scripted:{task}"
        self.task = task
        self.expert = make_expert(task)
        self.input_spec = InputSpec(
            {
                keys.OBS_STATE: Feature("float32", (STATE_DIM,), description="joint positions (rad, gripper m)"),
                keys.OBS_ENV_STATE: Feature(
                    "float32", (env_state_dim,), description="object poses: slots of pos(3)+quat wxyz(4)"
                ),
                keys.TASK: Feature("str", required=False, description="instruction (the expert ignores it)"),
            }
        )
        self.action_spec = ActionSpec(horizon=1, dim=STATE_DIM, fps=fps, units="rad (gripper: m)")

    def reset(self) -> None:
        self.expert.reset()

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        if obs.get(RESET):
            self.expert.reset()
        env_obs = {
            keys.AGENT_POS: obs[keys.OBS_STATE],
            keys.ENV_STATE: obs[keys.OBS_ENV_STATE],
            "task": self.task,
        }
        actions = np.asarray(self.expert.infer(env_obs)[keys.ACTIONS], dtype=np.float32).reshape(1, STATE_DIM)
        return {keys.ACTIONS: actions}

    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        return [self.infer(o) for o in batch]


BUILTIN = ("scripted", "linear", "hold")


def policy_factory(
    policy: str,
    task: str | None = None,
    cameras: list[str] | None = None,
    image_size: int = 224,
    horizon: int = 10,
    max_batch: int = 16,
) -> Callable[[], Policy]:
    """A zero-argument constructor for the named policy (the server calls it once, or once per connection)."""
    if policy == "scripted":
        import gymnasium as gym

        import genba.sim as sim

        if task not in sim.TASKS:
            raise GenbaError(f"policy=scripted needs task=<name>, got {task!r} (valid: {', '.join(sim.TASKS)})")
        env = sim.make(task, cameras=[])  # only to read the env-state width and the control rate
        try:
            space = env.observation_space
            assert isinstance(space, gym.spaces.Dict)
            dim = int(space[keys.ENV_STATE].shape[0])
            fps = float(env.unwrapped.fps)
        finally:
            env.close()
        return lambda: ScriptedPolicy(task, dim, fps)
    if policy in ("linear", "hold"):
        cls = LinearPolicy if policy == "linear" else HoldPolicy
        cams = list(cameras or [])
        return lambda: cls(cameras=cams, image_size=image_size, horizon=horizon, max_batch=max_batch)
    raise GenbaError(
        f"policy {policy!r} is not available: trained run directories (policy=<run dir>) come with the VLA "
        f"policies; valid now: {', '.join(BUILTIN)}"
    )
