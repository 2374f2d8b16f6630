"""Action safety: every commanded joint target is clipped to the robot's joint limits and to a maximum change per
control step, on the server (before an action leaves it) and again in the robot client (before it reaches a motor).

A robot's limits are in the unit its actions use: radians (gripper metres) for the genba MuJoCo arm; lerobot's
SO-101 follower units with `use_degrees=True` (its default) for the real arm: body joints in degrees within +-180
after calibration, gripper 0..100 (lerobot's RANGE_0_100).

Clipping happens in the policy's units (the server and the client both see the policy's actions, not the motor's), so
limits in other units are converted first: `robot_limits(robot, units=...)` (and the server, for `genba serve
robot=so101`) expresses the SO-101's range and per-step change in genba's radians and metres through
genba.serving.robots.so101_units, each bound rounded inwards, so that nothing the clip lets through lies outside
the SO-101's own limits once converted back. The conversion takes the two arms' zero poses to agree (so101_units()
without an offset, as the robot client's adapter by default). Units with no known conversion are refused in one
line, never compared as numbers.

    import numpy as np
    from genba.serving.safety import robot_limits

    lim = robot_limits("so101", units="rad (gripper: m)")  # +-pi rad, gripper 0..0.032 m; a step: 0.1396 rad, 0.0064 m
    lim.clip(np.full((8, 6), 9.0, np.float32), np.zeros(6, np.float32))  # (8, 6): rows 0.1396, 0.2793, ... rad
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.serving.robots import so101_units

GENBA_UNITS = "rad (gripper: m)"  # genba.policies.spec.ActionSpec's default: the genba arm's joint units
SO101_UNITS = "deg (gripper: 0..100)"  # lerobot's SO-101 follower with use_degrees=True


@dataclass(frozen=True)
class ActionLimits:
    """Joint limits `lower`/`upper` (A,) and the largest change of a target per control step `max_delta` (A,)."""

    names: tuple[str, ...]
    lower: np.ndarray  # (A,)
    upper: np.ndarray  # (A,)
    max_delta: np.ndarray  # (A,) per step at the robot's control rate
    units: str
    robot: str = ""  # whose limits these are (kept through a conversion of units)

    def to_json(self) -> dict:
        return {
            "robot": self.robot,
            "names": list(self.names),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "max_delta_per_step": self.max_delta.tolist(),
            "units": self.units,
        }

    def with_max_delta(self, scale: float) -> ActionLimits:
        """The same limits with the per-step change scaled (a cautious first run: scale < 1)."""
        return ActionLimits(self.names, self.lower, self.upper, self.max_delta * scale, self.units, self.robot)

    def in_units(self, units: str) -> ActionLimits:
        """The same limits in `units` (the policy's), or a one-line GenbaError when no conversion is known."""
        if units == self.units:
            return self
        conversion = _conversion(self.units, units)
        if conversion is None:
            # Degree limits on radian actions would clip nothing that matters: refuse rather than look safe.
            raise GenbaError(
                f"the {self.robot or 'robot'} limits are in {self.units} and no conversion to {units} is known "
                f"(known: {', '.join(f'{a} <-> {b}' for a, b in _CONVERSIONS)})"
            )
        scale, offset = conversion
        a, b = (self.lower - offset) * scale, (self.upper - offset) * scale  # float64
        lower, upper = _inward(np.minimum(a, b), +1), _inward(np.maximum(a, b), -1)
        delta = _inward(self.max_delta * np.abs(scale), -1)
        return ActionLimits(self.names, lower, upper, delta, units, self.robot)

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
    return ActionLimits(keys.JOINTS, lim[:, 0].copy(), lim[:, 1].copy(), delta, GENBA_UNITS, "genba_arm")


def _so101() -> ActionLimits:
    # lerobot SO-101 follower, use_degrees=True: body joints in degrees (+-180 after calibration), gripper 0..100.
    # 8 degrees per step at 30 Hz is 240 deg/s, under the STS3215's no-load speed.
    lower = np.array([-180, -180, -180, -180, -180, 0], dtype=np.float32)
    upper = np.array([180, 180, 180, 180, 180, 100], dtype=np.float32)
    delta = np.array([8, 8, 8, 8, 8, 20], dtype=np.float32)
    return ActionLimits(keys.JOINTS, lower, upper, delta, SO101_UNITS, "so101")


ROBOTS = {"genba_arm": _genba_arm, "so101": _so101}
# (robot units, policy units) -> the maker of its genba.serving.robots.JointUnits: policy = (robot - offset) * scale
_CONVERSIONS = {(SO101_UNITS, GENBA_UNITS): so101_units}


def robot_limits(robot: str, units: str | None = None) -> ActionLimits:
    """A robot's limits, in its own units or converted to `units` (the policy's action units)."""
    if robot not in ROBOTS:
        raise GenbaError(f"unknown robot {robot!r} (valid: {', '.join(ROBOTS)})")
    limits = ROBOTS[robot]()
    return limits if units is None else limits.in_units(units)


def _conversion(src: str, dst: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) (A,) float64 with dst = (src - offset) * scale, either way round; None if none is known."""
    if (src, dst) in _CONVERSIONS:
        u = _CONVERSIONS[src, dst]()
        return u.scale, u.offset
    if (dst, src) in _CONVERSIONS:
        u = _CONVERSIONS[dst, src]()
        return 1.0 / u.scale, -u.offset * u.scale
    return None


def _inward(bound: np.ndarray, direction: int) -> np.ndarray:
    """`bound` (A,) float64 as float32, moved one float32 step towards `direction` where rounding went past it."""
    out = bound.astype(np.float32)
    past = out < bound if direction > 0 else out > bound
    return np.where(past, np.nextafter(out, np.float32(direction * np.inf)), out).astype(np.float32)
