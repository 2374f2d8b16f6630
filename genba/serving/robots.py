"""Robot adapters for the episode loop (genba.policies.rollout.run_episode, driven by the robot client): what a real
robot reads and how it moves. The simulated arm is genba.sim.arm.SimArm.

- `LeRobotArm`: any lerobot `Robot` (get_observation / send_action with "<motor>.pos" keys and camera keys), e.g.
  the SO-101 follower. `JointUnits` converts between the robot's units and the policy's: an SO-101 with lerobot's
  default `use_degrees=True` reports body joints in degrees and the gripper in 0..100, while genba's policies use
  radians and the gripper opening in metres per finger (0..0.032).
  The instruction (`task`) is the adapter's `instruction`, fixed per episode by the operator, or when that is empty
  the robot's own `task_description` attribute where it has one (genba.serving.lerobot_sim's does).

Limits for the robot client are in the policy's units too: `robot_limits("so101", units=policy.action_spec.units)`
(genba.serving.safety) converts the SO-101's with the same `so101_units()`. A VLA trained on genba data then drives
an SO-101 (or its sim stand-in) through `genba serve policy=<run> robot=so101`:

    from genba.serving.lerobot_sim import SimSO101Config, SimSO101Follower  # or lerobot's SO101Follower
    from genba.serving.remote import RemotePolicy
    from genba.serving.robot_client import RobotClient
    from genba.serving.robots import LeRobotArm, so101_units
    from genba.serving.safety import robot_limits

    robot = SimSO101Follower(SimSO101Config(task="reach", camera_names=["front", "wrist"], image_size=64))
    robot.connect()
    policy = RemotePolicy("ws://127.0.0.1:8000")
    cameras = {"front": "front", "wrist": "wrist"}  # the robot's camera keys -> the policy's camera names
    arm = LeRobotArm(robot, fps=policy.action_spec.fps, units=so101_units(), cameras=cameras)
    client = RobotClient(arm, policy, limits=robot_limits("so101", units=policy.action_spec.units))
    robot.reset(seed=0)
    episode = client.run_episode()
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from genba import keys

SENT_KEPT = 10_000  # LeRobotArm.sent: the last actions kept for inspection
ENV_STATE_FEATURE = "environment_state"  # a lerobot robot's optional observation key carrying object poses


@dataclass(frozen=True)
class JointUnits:
    """policy value = (robot value - offset) * scale, per joint (A,)."""

    scale: np.ndarray  # (A,)
    offset: np.ndarray  # (A,) robot units

    def to_policy(self, robot: np.ndarray) -> np.ndarray:  # (A,) -> (A,)
        return ((np.asarray(robot, np.float64) - self.offset) * self.scale).astype(np.float32)

    def to_robot(self, policy: np.ndarray) -> np.ndarray:  # (A,) -> (A,)
        return (np.asarray(policy, np.float64) / self.scale + self.offset).astype(np.float32)


def so101_units(offset_deg: np.ndarray | None = None) -> JointUnits:
    """SO-101 follower with lerobot's `use_degrees=True` <-> genba arm units: degrees -> radians for the five body
    joints; gripper 0..100 (lerobot's RANGE_0_100) -> 0..0.032 m per finger. `offset_deg`: the robot's reading at
    the genba arm's zero pose (straight up), from calibration; zeros when the two zero poses agree."""
    scale = np.array([math.pi / 180] * 5 + [0.032 / 100.0])
    offset = np.zeros(6) if offset_deg is None else np.asarray(offset_deg, np.float64)
    return JointUnits(scale, offset)


class LeRobotArm:
    """A lerobot Robot as the control loop's robot. `cameras` maps the robot's camera keys to the policy's camera
    names (e.g. {"front": "front", "wrist": "wrist"}); the instruction is fixed per episode (empty: the robot's
    `task_description`, if it has one)."""

    def __init__(self, robot: Any, *, fps: float, units: JointUnits, instruction: str = "",
                 cameras: dict[str, str] | None = None, joints: tuple[str, ...] = keys.JOINTS) -> None:  # fmt: skip
        self.robot, self.fps, self.units, self.instruction = robot, float(fps), units, instruction
        self.cameras = dict(cameras or {})
        self.joints = joints
        # What send_action reported as actually sent (after its own clipping): the latest steps only, so that an
        # arm running for hours does not grow memory.
        self.sent: deque[dict] = deque(maxlen=SENT_KEPT)

    def observe(self) -> dict[str, Any]:
        raw = self.robot.get_observation()
        state = np.array([raw[f"{j}.pos"] for j in self.joints], dtype=np.float64)  # robot units
        out: dict[str, Any] = {keys.OBS_STATE: self.units.to_policy(state)}
        for robot_key, camera in self.cameras.items():
            out[keys.image_key(camera)] = np.asarray(raw[robot_key], dtype=np.uint8)
        if ENV_STATE_FEATURE in raw:
            out[keys.OBS_ENV_STATE] = np.asarray(raw[ENV_STATE_FEATURE], dtype=np.float32)
        instruction = self.instruction or getattr(self.robot, "task_description", "")
        if instruction:
            out[keys.TASK] = instruction
        return out

    def send(self, action: np.ndarray) -> None:
        target = self.units.to_robot(action)
        self.sent.append(
            self.robot.send_action({f"{j}.pos": float(v) for j, v in zip(self.joints, target, strict=True)})
        )

    @property
    def done(self) -> bool:
        return bool(getattr(self.robot, "done", False))

    def episode_info(self) -> dict:
        info = getattr(self.robot, "episode_info", None)
        return info() if callable(info) else {}
