"""A simulated SO-101 follower that implements lerobot's `Robot` interface, backed by the genba MuJoCo arm.

It speaks exactly what lerobot's SO-101 follower speaks with `use_degrees=True`: observation and action keys
"<motor>.pos" with body joints in degrees and the gripper in 0..100, camera images under the camera's name, and
`send_action` returning the action actually sent after its `max_relative_target` clipping (lerobot's own
`ensure_safe_goal_position`). It also reports the object poses under "environment_state", as a perception system
would, and the episode's instruction as `task_description` (the env's; genba.serving.robots.LeRobotArm uses it
when no instruction is given). Use it to dry-run a lerobot-robot set-up (LeRobotArm + RobotClient + genba serve)
before the real arm: `camera_names=["front", "wrist"], image_size=64` renders what a VLA trained on genba's 64x64 data
reads (tests/serving/test_vla_served.py runs one end to end).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lerobot.robots.config import RobotConfig
from lerobot.robots.robot import Robot
from lerobot.robots.utils import ensure_safe_goal_position

from genba import keys
from genba.serving.robots import ENV_STATE_FEATURE, so101_units

NAME = "genba_sim_so101"


@RobotConfig.register_subclass(NAME)
@dataclass(kw_only=True)
class SimSO101Config(RobotConfig):
    task: str = "pick_place"
    # genba camera names, rendered at image_size. Not lerobot's `cameras` (a dict of camera configs, which
    # RobotConfig checks for width/height/fps): the sim renders its own.
    camera_names: list[str] = field(default_factory=list)
    image_size: int = 128
    max_relative_target: float | None = None  # degrees, as lerobot's SO-101 config


class SimSO101Follower(Robot):
    config_class = SimSO101Config
    name = NAME

    def __init__(self, config: SimSO101Config) -> None:
        if config.calibration_dir is None:  # nothing to calibrate; keep lerobot's cache folder untouched
            config.calibration_dir = Path(tempfile.gettempdir()) / "genba-sim-so101-calibration"
        super().__init__(config)
        self.config = config
        self.units = so101_units()
        self.env: Any = None
        self._obs: dict | None = None
        self._connected = False
        self.done = False
        self._success = False
        self._reason = ""
        self.seed: int | None = None

    @property
    def observation_features(self) -> dict:
        feats: dict = {f"{j}.pos": float for j in keys.JOINTS}
        for cam in self.config.camera_names:
            feats[cam] = (self.config.image_size, self.config.image_size, 3)
        feats[ENV_STATE_FEATURE] = (35,)
        return feats

    @property
    def action_features(self) -> dict:
        return {f"{j}.pos": float for j in keys.JOINTS}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        import genba.sim as sim

        self.env = sim.make(self.config.task, cameras=list(self.config.camera_names), image_size=self.config.image_size)
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def reset(self, seed: int) -> None:
        """Start an episode (a real cell's operator would reset the scene)."""
        self._obs, _ = self.env.reset(seed=seed)
        self.seed, self.done, self._success, self._reason = seed, False, False, ""

    def _present(self) -> np.ndarray:  # (6,) robot units
        assert self._obs is not None
        return self.units.to_robot(self._obs[keys.AGENT_POS])

    def get_observation(self) -> dict[str, Any]:
        if not self._connected or self._obs is None:
            raise ConnectionError(f"{self} is not connected (or no episode started)")
        obs: dict[str, Any] = {f"{j}.pos": float(v) for j, v in zip(keys.JOINTS, self._present(), strict=True)}
        for cam in self.config.camera_names:
            obs[cam] = self._obs[keys.PIXELS][cam]
        obs[ENV_STATE_FEATURE] = self._obs[keys.ENV_STATE]
        return obs

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        if not self._connected or self._obs is None:
            raise ConnectionError(f"{self} is not connected (or no episode started)")
        goal = {k.removesuffix(".pos"): float(v) for k, v in action.items() if k.endswith(".pos")}
        if self.config.max_relative_target is not None:
            present = dict(zip(keys.JOINTS, self._present().tolist(), strict=True))
            goal = ensure_safe_goal_position({k: (g, present[k]) for k, g in goal.items()},
                                             self.config.max_relative_target)  # fmt: skip
        target = self.units.to_policy(np.array([goal[j] for j in keys.JOINTS]))
        self._obs, _, terminated, truncated, info = self.env.step(target)
        self._success = self._success or bool(info.get(keys.INFO_SUCCESS, False))
        self.done = bool(terminated or truncated)
        self._reason = info.get(keys.INFO_TRUNCATION_REASON, self._reason)
        return {f"{j}.pos": goal[j] for j in keys.JOINTS}

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
        self._connected = False

    @property
    def task_description(self) -> str:
        """The episode's instruction, as the env gives it (empty before the first reset)."""
        return "" if self.env is None else str(self.env.unwrapped.task_description)

    def episode_info(self) -> dict:
        return {"seed": self.seed, "success": self._success, "truncation_reason": self._reason}
