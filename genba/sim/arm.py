"""SimArm: a genba MuJoCo env seen as a robot: `observe()` in LeRobot's feature names, `send(action)` one step.

It is what the episode loop (genba.policies.rollout) drives in simulation, and what the robot client drives when a
simulated arm stands in for a real one. It reports what a real cell could: joint positions, camera images (and depth
when the env renders it), the instruction, and the object poses as `observation.environment_state` (LeRobot's name
for privileged state; the scripted experts need it, a vision policy ignores it). `provides(key, dtype, shape)` says
whether it can give a feature a policy declares, so evaluation refuses a mismatched policy before any episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genba import keys
from genba.sim.scene import ENV_STATE_DIM


class SimArm:
    """A genba.sim env driven one control step per `send`; `reset(seed)` starts an episode."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.fps = float(env.unwrapped.fps)
        self._obs: dict | None = None
        self._done = False
        self._success = False
        self._reason: str | None = None
        self.seed: int | None = None

    def reset(self, seed: int, options: dict | None = None) -> None:
        self._obs, _ = self.env.reset(seed=seed, options=options)
        self.seed, self._done, self._success, self._reason = seed, False, False, None

    def observe(self) -> dict[str, Any]:
        """observation.state (6,), observation.environment_state (E,), task, observation.images.<cam> (H, W, 3)
        uint8 and observation.depth.<cam> (H, W, 1) float32 metres for the cameras the env renders."""
        if self._obs is None:
            raise RuntimeError("SimArm.observe() before reset()")
        return policy_observation(self._obs, self.env.unwrapped.task_description)

    def send(self, action: np.ndarray) -> None:
        self.took(self.env.step(np.asarray(action, dtype=np.float32)))

    def took(self, result: tuple) -> None:
        """Take in a step's gymnasium result (obs, reward, terminated, truncated, info): `send` steps the env itself;
        genba.worldmodel.batched steps many arms' envs in one batch and hands each its row."""
        self._obs, _, terminated, truncated, info = result
        self._success = self._success or bool(info.get(keys.INFO_SUCCESS, False))
        self._done = bool(terminated or truncated)
        if truncated:
            self._reason = info.get(keys.INFO_TRUNCATION_REASON)

    @property
    def done(self) -> bool:
        return self._done

    def episode_info(self) -> dict:
        return {"seed": self.seed, "success": self._success, "truncation_reason": self._reason}


def policy_observation(obs: dict[str, Any], instruction: str) -> dict[str, Any]:
    """An env observation (pixels/depth/agent_pos/environment_state) in LeRobot's feature names."""
    out: dict[str, Any] = {
        keys.OBS_STATE: obs[keys.AGENT_POS],
        keys.OBS_ENV_STATE: obs[keys.ENV_STATE],
        keys.TASK: instruction,
    }
    for camera, image in obs.get(keys.PIXELS, {}).items():
        out[keys.image_key(camera)] = image
    for camera, depth in obs.get(keys.DEPTH, {}).items():
        out[keys.depth_key(camera)] = depth[..., None]  # (H, W, 1): LeRobot's depth feature shape
    return out


def provides(key: str, dtype: str, shape: tuple[int, ...]) -> bool:
    """Whether `observe()` can give feature `key` as (dtype, shape) declares it (any square image size)."""
    if key == keys.TASK:
        return dtype == "str"
    if key in (keys.OBS_STATE, keys.OBS_ENV_STATE):
        dim = len(keys.JOINTS) if key == keys.OBS_STATE else ENV_STATE_DIM
        return dtype.startswith("float") and tuple(shape) == (dim,)
    for prefix, kind, channels in ((keys.OBS_IMAGES, "uint8", 3), (keys.OBS_DEPTH, "float32", 1)):
        if key.startswith(prefix + "."):
            camera = key[len(prefix) + 1 :]
            return camera in keys.CAMERAS and dtype == kind and len(shape) == 3 and shape[2] == channels
    return False


_CAMS = ",".join(keys.CAMERAS)
PROVIDES = (  # what provides() accepts, in words, for error messages
    f"{keys.OBS_STATE} float32[{len(keys.JOINTS)}], {keys.OBS_ENV_STATE} float32[{ENV_STATE_DIM}], {keys.TASK} str, "
    f"{keys.OBS_IMAGES}.{{{_CAMS}}} uint8[SxSx3], {keys.OBS_DEPTH}.{{{_CAMS}}} float32[SxSx1]"
)
