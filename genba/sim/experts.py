"""Scripted experts: inverse kinematics + waypoints, acting from the observation only (agent_pos, environment_state).

    expert = make_expert("pick_place", noise=0.0, seed=0)
    expert.reset()
    action = expert.act(obs)                 # (6,) float32 target joint positions (the env's joint action mode)

genba.policies.scripted.ScriptedPolicy puts an expert behind the policy contract.

An expert is its task's list of phases (the task module's `phases(expert)`, see genba.sim.tasks); this module is
the engine that runs them, plus the building blocks the plans share (approach_and_grasp, remember_height, lift).
A phase gives a tool target (tip position, yaw, gripper opening) computed from the current observation, and the
expert moves a commanded tip towards it at a bounded speed, solving IK for the joint targets (genba.sim.ik,
MuJoCo Jacobians on a private MjData of the arm). A phase ends when the commanded tip has arrived and the measured
tip is close (or after a few settling steps). Objects' heights come from their resting z (a resting object's
centre height is its half-height), so the expert needs nothing but the observation.

fps (default 10) must match the env's control rate: speeds are defined per second, so episodes last the same
time at any rate. The gripper command moves at a bounded rate too (GRIP_TIME from open to closed: 3 frames at
10 fps, 9 at 30 fps), as a real arm's gripper does, and a phase that opens or closes it ends only once the command
is there: no frame-to-frame jump of the whole gripper range (which dataset checkers read as an encoder fault).
noise=sigma adds N(0, sigma^2) radians to the five arm joint targets at every step (recovery
data): the plan follows the commanded tip, not the noisy joints, so the expert corrects itself. `clean_actions` lists
the episode's actions before the noise (the expert's own, clipped like the sent ones): DART-style labels for the
states the noisy actions lead to (`genba collect clean_labels=true`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.sim.ik import ArmIK, natural_yaw, wrap_yaw
from genba.sim.model import JOINT_LIMITS
from genba.sim.scene import N_SLOTS, SLOT_DIM

if TYPE_CHECKING:
    from genba.sim.tasks.task import Task

OPEN, CLOSED = float(JOINT_LIMITS[5, 1]), 0.0
SPEED = 0.025  # metres per step (at 10 fps: 25 cm/s)
HOVER = 0.075  # tip height for moving above objects
GRIP_TIME = 0.3  # seconds for the gripper command to go from open to closed (or back)


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
    """Runs a task's phases. The phases read and write the public state below (cmd, grasp_yaw, held_h)."""

    def __init__(self, task: Task, noise: float = 0.0, seed: int | None = None, fps: int = 10) -> None:
        self.task, self.noise = task.name, float(noise)
        self.per_step = 10.0 / fps  # speeds and waits below are per step at 10 fps: same motion in seconds
        self.ik = ArmIK()
        self.rng = np.random.default_rng(seed)
        self.phases = task.phases(self)
        self.reset()

    def reset(self) -> None:
        self._phase = 0
        self._held = 0
        self.clean_actions: list[np.ndarray] = []  # (6,) float32 per act() since reset: the actions without noise
        self.cmd: np.ndarray | None = None  # commanded (x, y, z, yaw)
        self._q: np.ndarray | None = None
        self._grip = OPEN
        self.grasp_yaw: float | None = None
        self.held_h = 0.015  # half-height of the grasped object, measured when grasped

    def restart(self) -> None:
        """Go back to the first phase (a plan that sees it went wrong starts over)."""
        self._phase, self._held = 0, 0

    def act(self, obs: dict) -> np.ndarray:
        q = np.asarray(obs[keys.AGENT_POS], dtype=float)
        state = np.asarray(obs[keys.ENV_STATE], dtype=float).reshape(N_SLOTS, SLOT_DIM)
        if self.cmd is None:
            tip, _ = self.ik.fk(q)
            self.cmd = np.array([*tip, self.ik.tool_yaw(q)])
            self._q = q[:5].copy()
        phase = self.phases[min(self._phase, len(self.phases) - 1)]
        pos, yaw, grip = phase.target(state)
        yaw = self.cmd[3] if yaw is None else wrap_yaw(yaw, self.cmd[3], 2 * math.pi)
        step = pos - self.cmd[:3]
        dist, speed = float(np.linalg.norm(step)), phase.speed * self.per_step
        self.cmd[:3] += step * min(1.0, speed / max(dist, 1e-9))
        turn = 0.35 * self.per_step
        self.cmd[3] += float(np.clip(yaw - self.cmd[3], -turn, turn))
        grip_step = (OPEN - CLOSED) * self.per_step / (10 * GRIP_TIME)
        gap = grip - self._grip
        self._grip = grip if abs(gap) <= grip_step else self._grip + math.copysign(grip_step, gap)
        self._q = self.ik.solve(self.cmd[:3], float(self.cmd[3]), self._q)

        tip, _ = self.ik.fk(q)
        arrived = dist <= speed + 1e-9 and abs(yaw - self.cmd[3]) < 1e-6 and self._grip == grip
        if arrived and self._phase < len(self.phases) - 1:
            self._held += 1
            wait = round(phase.wait / self.per_step)
            settled = np.linalg.norm(tip - pos) < phase.tol and self._held > wait
            if settled or self._held > wait + round(6 / self.per_step):
                self._phase += 1
                self._held = 0
        action = np.concatenate([self._q, [self._grip]])
        self.clean_actions.append(np.clip(action, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1]).astype(np.float32))
        if self.noise > 0:
            action[:5] += self.rng.normal(0.0, self.noise, 5)
        return np.clip(action, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1]).astype(np.float32)


# ----------------------------------------------------------------- building blocks of the task plans
def grasp_yaw_for(state: np.ndarray) -> float:
    """Close the jaw across two faces of a cube (any direction for round objects), near the arm's natural yaw."""
    p, quat = state[0, :3], state[0, 3:]
    nat = natural_yaw(p[0], p[1])
    yaw = wrap_yaw(_yaw_of(quat), nat, math.pi / 2)
    return yaw if abs(yaw - nat) < math.pi / 4 + 1e-6 else nat


def approach_and_grasp(x: ScriptedExpert) -> list[Phase]:
    """Above the named object (slot 0), down to it, close the gripper."""

    def above(s):
        x.grasp_yaw = grasp_yaw_for(s)
        return np.array([s[0, 0], s[0, 1], HOVER]), x.grasp_yaw, OPEN

    def down(s):
        return np.array([s[0, 0], s[0, 1], max(s[0, 2], 0.013)]), x.grasp_yaw, OPEN

    def close(s):
        return x.cmd[:3].copy(), x.grasp_yaw, CLOSED

    return [
        Phase("above", above, tol=0.01),
        Phase("down", down, speed=0.018, tol=0.004),
        Phase("close", close, speed=0.0, wait=3, tol=1.0),
    ]


def remember_height(x: ScriptedExpert) -> Phase:
    """Record the grasped object's half-height (its resting z) before lifting it."""

    def remember(s):
        x.held_h = float(s[0, 2])
        return x.cmd[:3].copy(), None, CLOSED

    return Phase("remember", remember, speed=0.0, wait=0, tol=1.0)


def lift(x: ScriptedExpert, height: float) -> Phase:
    def up(s):
        return np.array([x.cmd[0], x.cmd[1], height]), None, CLOSED

    return Phase("lift", up, tol=0.015)


def make_expert(task: str, *, noise: float = 0.0, seed: int | None = None, fps: int = 10) -> ScriptedExpert:
    """The scripted expert of a task; joint-mode actions (6,) float32. fps: the env's control rate."""
    from genba.sim.tasks import get_task  # here, not at the top: the task modules import this one

    t = get_task(task)
    if noise < 0:
        raise GenbaError(f"noise={noise!r} must be >= 0")
    return ScriptedExpert(t, noise=noise, seed=seed, fps=fps)
