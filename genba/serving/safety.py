"""Action safety: every commanded joint target is clipped to the robot's joint limits and to a maximum change per
control step, on the server (before an action leaves it) and again in the robot client (before it reaches a motor).

A robot's limits are in the unit its actions use: radians (gripper metres) for the genba MuJoCo arm; lerobot's
SO-101 follower units with `use_degrees=True` (its default) for the real arm: body joints in degrees within +-180
after calibration, gripper 0..100 (lerobot's RANGE_0_100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genba import keys
from genba.errors import GenbaError


@dataclass(frozen=True)
class ActionLimits:
    """Joint limits `lower`/`upper` (A,) and the largest change of a target per control step `max_delta` (A,)."""

    names: tuple[str, ...]
    lower: np.ndarray  # (A,)
    upper: np.ndarray  # (A,)
    max_delta: np.ndarray  # (A,) per step at the robot's control rate
    units: str

    def to_json(self) -> dict:
        return {
            "names": list(self.names),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "max_delta_per_step": self.max_delta.tolist(),
            "units": self.units,
        }

    def with_max_delta(self, scale: float) -> ActionLimits:
        """The same limits with the per-step change scaled (a cautious first run: scale < 1)."""
        return ActionLimits(self.names, self.lower, self.upper, self.max_delta * scale, self.units)

    def clip(self, chunk: np.ndarray, current: np.ndarray | None) -> np.ndarray:
        """Clip an action chunk (H, A) row by row: into [lower, upper], then within max_delta of the previous row
        (the first row within max_delta of `current` (A,), the measured joint positions, when known)."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != len(self.names):
            raise ValueError(f"action chunk of shape {chunk.shape}, expected (H, {len(self.names)})")
        out = np.clip(chunk, self.lower, self.upper)
        prev = None if current is None else np.clip(np.asarray(current, np.float32), self.lower, self.upper)
        for i in range(len(out)):
            if prev is not None:
                out[i] = np.clip(out[i], prev - self.max_delta, prev + self.max_delta)
            prev = out[i]
        return out


def _genba_arm() -> ActionLimits:
    from genba.sim.model import JOINT_LIMITS  # (6, 2): radians, gripper in metres per finger

    # Targets of position servos, not velocities: the actuators' force limits bound the real speed. The scripted
    # experts move a target up to 0.9 rad from the measured position in one step (wrist roll while aligning);
    # 1 rad stops a wild target (a flipped pan, a unit mix-up) without ever touching theirs. The gripper may open
    # or close fully in one step.
    delta = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.032], dtype=np.float32)
    lim = np.asarray(JOINT_LIMITS, dtype=np.float32)
    return ActionLimits(keys.JOINTS, lim[:, 0].copy(), lim[:, 1].copy(), delta, "rad (gripper: m)")


def _so101() -> ActionLimits:
    # lerobot SO-101 follower, use_degrees=True: body joints in degrees (+-180 after calibration), gripper 0..100.
    # 8 degrees per step at 30 Hz is 240 deg/s, under the STS3215's no-load speed.
    lower = np.array([-180, -180, -180, -180, -180, 0], dtype=np.float32)
    upper = np.array([180, 180, 180, 180, 180, 100], dtype=np.float32)
    delta = np.array([8, 8, 8, 8, 8, 20], dtype=np.float32)
    return ActionLimits(keys.JOINTS, lower, upper, delta, "deg (gripper: 0..100)")


ROBOTS = {"genba_arm": _genba_arm, "so101": _so101}


def robot_limits(robot: str) -> ActionLimits:
    if robot not in ROBOTS:
        raise GenbaError(f"unknown robot {robot!r} (valid: {', '.join(ROBOTS)})")
    return ROBOTS[robot]()
