"""Inverse kinematics for top-down grasps, on a private MjData of the arm alone (MuJoCo's own Jacobians).

A tool pose is the tip position (3,) plus a yaw: the gripper points straight down and its fingers close along
(cos yaw, sin yaw, 0). The 5 arm joints reach such poses exactly (pan + the three pitch joints place the tip and
keep it vertical, wrist_roll sets the yaw), so damped least squares converges in a few iterations.
"""

from __future__ import annotations

import math

import numpy as np

from genba.sim.model import JOINT_LIMITS, TIP_SITE, build_model

_DOWN = np.array([0.0, 0.0, -1.0])


def tool_rotation(yaw: float) -> np.ndarray:
    """(3, 3) rotation whose columns are the tool axes: x = closing direction, z = down."""
    x = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return np.stack([x, np.cross(_DOWN, x), _DOWN], axis=1)


def natural_yaw(x: float, y: float) -> float:
    """The tool yaw at wrist_roll = 0 when the tip is at (x, y): closing direction along the arm's radius."""
    return math.atan2(y, x) + math.pi


def wrap_yaw(yaw: float, reference: float, period: float = math.pi) -> float:
    """The yaw equivalent to `yaw` modulo `period` that is closest to `reference` (jaw / object symmetry)."""
    return reference + (yaw - reference + period / 2) % period - period / 2


class ArmIK:
    def __init__(self) -> None:
        import mujoco

        self._mj = mujoco
        self.model = build_model(None)
        self.data = mujoco.MjData(self.model)
        self.site = self.model.site(TIP_SITE).id
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))
        self.lo, self.hi = JOINT_LIMITS[:5, 0].astype(float), JOINT_LIMITS[:5, 1].astype(float)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tip position (3,) and rotation (3, 3) for arm joints q (>= 5,)."""
        self.data.qpos[:5] = q[:5]
        self._mj.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def tool_yaw(self, q: np.ndarray) -> float:
        _, rot = self.fk(q)
        return math.atan2(rot[1, 0], rot[0, 0])

    def solve(self, pos: np.ndarray, yaw: float, q0: np.ndarray, iters: int = 30, tol: float = 1e-4) -> np.ndarray:
        """Arm joints (5,) putting the tip at pos (3,) pointing down with the given yaw, starting from q0 (>= 5,)."""
        m, d, mj = self.model, self.data, self._mj
        q = np.clip(np.asarray(q0[:5], float), self.lo, self.hi)
        target = tool_rotation(yaw)
        err = np.zeros(6)
        for _ in range(iters):
            d.qpos[:5] = q
            mj.mj_kinematics(m, d)
            mj.mj_comPos(m, d)
            rot = d.site_xmat[self.site].reshape(3, 3)
            err[:3] = pos - d.site_xpos[self.site]
            err[3:] = 0.5 * (np.cross(rot[:, 0], target[:, 0]) + np.cross(rot[:, 1], target[:, 1])
                             + np.cross(rot[:, 2], target[:, 2]))  # fmt: skip
            if np.linalg.norm(err[:3]) < tol and np.linalg.norm(err[3:]) < 10 * tol:
                break
            mj.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, :5], 0.1 * self._jacr[:, :5]])  # orientation in ~decimetres
            e = np.concatenate([err[:3], 0.1 * err[3:]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-6 * np.eye(6), e)
            q = np.clip(q + np.clip(dq, -0.5, 0.5), self.lo, self.hi)
        return q
