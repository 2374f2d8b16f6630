"""Scripted experts: inverse kinematics + waypoints, acting from the observation only (agent_pos, environment_state).

    expert = make_expert("pick_place", noise=0.0, seed=0)
    expert.reset()
    action = expert.act(obs)                 # (6,) float32 target joint positions (the env's joint action mode)
    chunk = expert.infer(obs)["actions"]     # (1, 6): the policy contract of genba.policies

Each expert is a list of phases; a phase gives a tool target (tip position, yaw, gripper opening) computed from the
current observation, and the expert moves a commanded tip towards it at a bounded speed, solving IK for the joint
targets (genba.sim.ik, MuJoCo Jacobians on a private MjData of the arm). A phase ends when the commanded tip has
arrived and the measured tip is close (or after a few settling steps). Objects' heights come from their resting z
(a resting object's centre height is its half-height), so the expert needs nothing but the observation.

fps (default 10) must match the env's control rate: speeds are defined per second, so episodes last the same
time at any rate. noise=sigma adds N(0, sigma^2) radians to the five arm joint targets at every step (recovery
data): the plan follows the commanded tip, not the noisy joints, so the expert corrects itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genba import keys
from genba.sim.ik import ArmIK, natural_yaw, wrap_yaw
from genba.sim.model import JOINT_LIMITS
from genba.sim.scene import BIN_INNER, N_SLOTS, SLOT_DIM, TASKS

OPEN, CLOSED = float(JOINT_LIMITS[5, 1]), 0.0
SPEED = 0.025  # metres per step (at 10 fps: 25 cm/s)
HOVER = 0.075  # tip height for moving above objects


def _yaw_of(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


@dataclass
class Phase:
    name: str
    target: Callable[[np.ndarray], tuple[np.ndarray, float | None, float]]  # state (5, 7) -> pos, yaw, gripper
    speed: float = SPEED
    wait: int = 0  # extra steps to hold once arrived (gripper closing / opening)
    tol: float = 0.008  # measured tip within tol of the target -> arrived


class ScriptedExpert:
    def __init__(self, task: str, noise: float = 0.0, seed: int | None = None, fps: int = 10) -> None:
        self.task, self.noise = task, float(noise)
        self.per_step = 10.0 / fps  # speeds and waits below are per step at 10 fps: same motion in seconds
        self.ik = ArmIK()
        self.rng = np.random.default_rng(seed)
        self.phases = {"reach": self._reach, "push": self._push, "pick_place": self._pick_place,
                       "stack": self._stack}[task]()  # fmt: skip
        self.reset()

    def reset(self) -> None:
        self._phase = 0
        self._held = 0
        self._cmd: np.ndarray | None = None  # commanded (x, y, z, yaw)
        self._q: np.ndarray | None = None
        self._grip = OPEN
        self._grasp_yaw: float | None = None
        self._held_h = 0.015  # half-height of the grasped object, measured when grasped

    def infer(self, obs: dict) -> dict:
        return {keys.ACTIONS: self.act(obs)[None]}

    def act(self, obs: dict) -> np.ndarray:
        q = np.asarray(obs[keys.AGENT_POS], dtype=float)
        state = np.asarray(obs[keys.ENV_STATE], dtype=float).reshape(N_SLOTS, SLOT_DIM)
        if self._cmd is None:
            tip, _ = self.ik.fk(q)
            self._cmd = np.array([*tip, self.ik.tool_yaw(q)])
            self._q = q[:5].copy()
        phase = self.phases[min(self._phase, len(self.phases) - 1)]
        pos, yaw, grip = phase.target(state)
        yaw = self._cmd[3] if yaw is None else wrap_yaw(yaw, self._cmd[3], 2 * math.pi)
        step = pos - self._cmd[:3]
        dist, speed = float(np.linalg.norm(step)), phase.speed * self.per_step
        self._cmd[:3] += step * min(1.0, speed / max(dist, 1e-9))
        turn = 0.35 * self.per_step
        self._cmd[3] += float(np.clip(yaw - self._cmd[3], -turn, turn))
        self._grip = grip
        self._q = self.ik.solve(self._cmd[:3], float(self._cmd[3]), self._q)

        tip, _ = self.ik.fk(q)
        arrived = dist <= speed + 1e-9 and abs(yaw - self._cmd[3]) < 1e-6
        if arrived and self._phase < len(self.phases) - 1:
            self._held += 1
            wait = round(phase.wait / self.per_step)
            settled = np.linalg.norm(tip - pos) < phase.tol and self._held > wait
            if settled or self._held > wait + round(6 / self.per_step):
                self._phase += 1
                self._held = 0
        action = np.concatenate([self._q, [self._grip]])
        if self.noise > 0:
            action[:5] += self.rng.normal(0.0, self.noise, 5)
        return np.clip(action, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1]).astype(np.float32)

    # ------------------------------------------------------------- task plans
    def _grasp_yaw_for(self, state: np.ndarray) -> float:
        """Close the jaw across two faces of a cube (any direction for round objects), near the arm's natural yaw."""
        p, quat = state[0, :3], state[0, 3:]
        nat = natural_yaw(p[0], p[1])
        yaw = wrap_yaw(_yaw_of(quat), nat, math.pi / 2)
        return yaw if abs(yaw - nat) < math.pi / 4 + 1e-6 else nat

    def _approach_and_grasp(self) -> list[Phase]:
        def above(s):
            self._grasp_yaw = self._grasp_yaw_for(s)
            return np.array([s[0, 0], s[0, 1], HOVER]), self._grasp_yaw, OPEN

        def down(s):
            return np.array([s[0, 0], s[0, 1], max(s[0, 2], 0.013)]), self._grasp_yaw, OPEN

        def close(s):
            return self._cmd[:3].copy(), self._grasp_yaw, CLOSED

        return [
            Phase("above", above, tol=0.01),
            Phase("down", down, speed=0.018, tol=0.004),
            Phase("close", close, speed=0.0, wait=3, tol=1.0),
        ]

    def _lift(self, height: float) -> Phase:
        def lift(s):
            return np.array([self._cmd[0], self._cmd[1], height]), None, CLOSED

        return Phase("lift", lift, tol=0.015)

    def _pick_place(self) -> list[Phase]:
        wall = BIN_INNER[2]

        def over_bin(s):
            return np.array([s[1, 0], s[1, 1], 0.1]), None, CLOSED

        def lower(s):
            return np.array([s[1, 0], s[1, 1], wall + self._held_h + 0.02]), None, CLOSED

        def release(s):
            return self._cmd[:3].copy(), None, OPEN

        def retreat(s):
            return np.array([s[1, 0], s[1, 1], 0.12]), None, OPEN

        return [*self._approach_and_grasp(), self._remember_height(), self._lift(0.1), Phase("over_bin", over_bin),
                Phase("lower", lower, speed=0.015), Phase("release", release, speed=0.0, wait=3, tol=1.0),
                Phase("retreat", retreat)]  # fmt: skip

    def _remember_height(self) -> Phase:
        """Record the grasped object's half-height (its resting z) before lifting it."""

        def remember(s):
            self._held_h = float(s[0, 2])
            return self._cmd[:3].copy(), None, CLOSED

        return Phase("remember", remember, speed=0.0, wait=0, tol=1.0)

    def _stack(self) -> list[Phase]:
        def over_base(s):
            return np.array([s[1, 0], s[1, 1], 0.1]), None, CLOSED

        def place_z(s):
            return 2 * s[1, 2] + self._held_h + 0.004

        def lower(s):
            return np.array([s[1, 0], s[1, 1], place_z(s)]), None, CLOSED

        def release(s):
            return self._cmd[:3].copy(), None, OPEN

        def retreat(s):
            return np.array([self._cmd[0], self._cmd[1], 0.12]), None, OPEN

        return [*self._approach_and_grasp(), self._remember_height(), self._lift(0.1), Phase("over_base", over_base),
                Phase("lower", lower, speed=0.012, tol=0.004), Phase("release", release, speed=0.0, wait=3, tol=1.0),
                Phase("retreat", retreat)]  # fmt: skip

    def _reach(self) -> list[Phase]:
        def above(s):
            return np.array([s[0, 0], s[0, 1], HOVER]), natural_yaw(s[0, 0], s[0, 1]), OPEN

        def at(s):
            return np.array([s[0, 0], s[0, 1], 2 * s[0, 2] + 0.02]), natural_yaw(s[0, 0], s[0, 1]), OPEN

        return [Phase("above", above, tol=0.015), Phase("at", at, speed=0.015, tol=0.005)]

    def _push(self) -> list[Phase]:
        """Push with the two pads slightly open (a 4 cm wide flat pusher across the push direction), re-approach
        from behind whenever the object has slid off the line to the goal."""
        low, ajar = 0.02, 0.008

        def direction(s):
            d = s[1, :2] - s[0, :2]
            return d / max(np.linalg.norm(d), 1e-9)

        def behind(s, extra: float):
            return s[0, :2] - direction(s) * (s[0, 2] + 0.012 + extra)  # resting z ~ the object's half-size

        def push_yaw(s):
            d = direction(s)
            return wrap_yaw(math.atan2(d[0], -d[1]), natural_yaw(*s[0, :2]), math.pi)

        def up(s):
            return np.array([self._cmd[0], self._cmd[1], 0.06]), None, ajar

        def above(s):
            return np.array([*behind(s, 0.02), 0.06]), push_yaw(s), ajar

        def down(s):
            return np.array([*behind(s, 0.02), low]), push_yaw(s), ajar

        def push(s):
            d = direction(s)
            rel = self._cmd[:2] - s[0, :2]
            lateral, along = abs(rel[0] * d[1] - rel[1] * d[0]), -float(rel @ d)
            if lateral > 0.012 or along < 0.005:  # slid off the line: back up and come again from behind
                self._phase, self._held = 0, 0
                return up(s)
            if np.linalg.norm(s[1, :2] - s[0, :2]) < 0.006:
                return self._cmd[:3].copy(), None, ajar
            return np.array([*behind(s, -0.015), low]), push_yaw(s), ajar

        return [Phase("up", up, tol=0.02), Phase("above", above, tol=0.012),
                Phase("down", down, speed=0.015, tol=0.006), Phase("push", push, speed=0.01, tol=0.0)]  # fmt: skip


def make_expert(task: str, *, noise: float = 0.0, seed: int | None = None, fps: int = 10) -> ScriptedExpert:
    """The scripted expert of a task; joint-mode actions (6,) float32. fps: the env's control rate."""
    if task not in TASKS:
        from genba.errors import GenbaError

        raise GenbaError(f"unknown task {task!r} (valid: {', '.join(TASKS)})")
    if noise < 0:
        from genba.errors import GenbaError

        raise GenbaError(f"noise={noise!r} must be >= 0")
    return ScriptedExpert(task, noise=noise, seed=seed, fps=fps)
