"""Replayer: rebuild an episode's scene from its spec and pose it from logged (agent_pos, environment_state).

    rep = Replayer(env.unwrapped.episode_spec())        # or the spec stored with a dataset episode
    rep.geoms()                                        # static description of every visible geom
    rep.body_poses(agent_pos, env_state)               # world poses of every body at that frame
    rep.camera("front", agent_pos, env_state)          # pose + intrinsics, to back-project depth

No rendering and no env: only the MjModel built from the spec and forward kinematics. Quaternions are wxyz;
camera xmat is MuJoCo's convention (columns = camera x right, y up, z backwards: the camera looks along -z).
"""

from __future__ import annotations

import numpy as np

from genba.sim.model import ARM_JOINTS, build_model
from genba.sim.scene import N_SLOTS, SLOT_DIM

_GEOM_TYPES = {0: "plane", 2: "sphere", 3: "capsule", 4: "ellipsoid", 5: "cylinder", 6: "box"}


class Replayer:
    def __init__(self, spec: dict) -> None:
        import mujoco

        self._mj = mujoco
        self.spec = spec
        self.model = build_model(spec)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._mirror_qadr = m.jnt_qposadr[m.joint("gripper_right").id]
        self._free: list[tuple[int, int]] = []  # (slot, qpos address) of the objects that move
        for obj in spec.get("objects", []):
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, obj["name"])
            if jid >= 0:
                self._free.append((obj["slot"], int(m.jnt_qposadr[jid])))
        self._body_names = [m.body(i).name for i in range(m.nbody)]

    def _pose(self, agent_pos: np.ndarray, env_state: np.ndarray) -> None:
        """agent_pos (6,), env_state (E,) -> forward kinematics in self.data."""
        qpos, agent = self.data.qpos, np.asarray(agent_pos, float)
        qpos[self._arm_qadr] = agent
        qpos[self._mirror_qadr] = agent[5]
        slots = np.asarray(env_state, float).reshape(N_SLOTS, SLOT_DIM)
        for slot, adr in self._free:
            quat = slots[slot, 3:]
            qpos[adr : adr + 3] = slots[slot, :3]
            qpos[adr + 3 : adr + 7] = quat / n if (n := np.linalg.norm(quat)) > 0 else [1, 0, 0, 0]
        self._mj.mj_kinematics(self.model, self.data)
        self._mj.mj_camlight(self.model, self.data)

    def geoms(self) -> list[dict]:
        """Every visible geom: body name, type, size (MuJoCo convention), rgba, pos/quat (wxyz) in its body."""
        m = self.model
        out = []
        for g in range(m.ngeom):
            rgba = m.geom_rgba[g]
            if m.geom_matid[g] >= 0:  # the floor: its material colour stands in for the texture
                rgba = m.mat_rgba[m.geom_matid[g]]
            if rgba[3] == 0 or int(m.geom_type[g]) not in _GEOM_TYPES:
                continue
            out.append(
                {
                    "body": self._body_names[m.geom_bodyid[g]],
                    "type": _GEOM_TYPES[int(m.geom_type[g])],
                    "size": m.geom_size[g].tolist(),
                    "rgba": rgba.tolist(),
                    "pos": m.geom_pos[g].tolist(),
                    "quat": m.geom_quat[g].tolist(),
                }
            )
        return out

    def body_poses(self, agent_pos: np.ndarray, env_state: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """World pose (pos (3,), quat wxyz (4,)) of every body, for agent_pos (6,) and env_state (E,)."""
        self._pose(agent_pos, env_state)
        d = self.data
        return {name: (d.xpos[i].copy(), d.xquat[i].copy()) for i, name in enumerate(self._body_names)}

    def camera(self, name: str, agent_pos: np.ndarray, env_state: np.ndarray) -> dict:
        """Camera pose and intrinsics: pos (3,), xmat (3, 3), fovy (degrees, vertical), width, height (pixels)."""
        cid = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_CAMERA, name)
        if cid < 0:
            from genba.errors import GenbaError

            valid = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise GenbaError(f"unknown camera {name!r} (valid: {', '.join(valid)})")
        self._pose(agent_pos, env_state)
        size = int(self.spec.get("image_size", 128))
        return {
            "pos": self.data.cam_xpos[cid].copy(),
            "xmat": self.data.cam_xmat[cid].reshape(3, 3).copy(),
            "fovy": float(self.model.cam_fovy[cid]),
            "width": size,
            "height": size,
        }
