"""GenbaEnv: one gymnasium environment class for every registered arm task (genba.sim.tasks.TASKS).

Observation (dict, keys from genba.keys, LeRobot's env convention):
    pixels             {camera: (H, W, 3) uint8}     only the configured cameras; absent when cameras=[]
    depth              {camera: (H, W) float32}      metres from the camera plane, only when depth=True
    agent_pos          (6,) float32                  joint positions, radians; gripper in metres per finger
                                                     (0 closed .. 0.032 open, see genba.sim.model)
    environment_state  (35,) float32                 5 slots x (pos xyz metres, quat wxyz), see genba.sim.scene

Action:
    action_mode="joint"     (6,) float32 target joint positions, same units as agent_pos (clipped to the limits)
    action_mode="ee_delta"  (5,) float32 (dx, dy, dz metres, dyaw radians, gripper target): moves the commanded
                            tip of a top-down gripper, per step, |dxyz| <= 0.03, |dyaw| <= 0.3; the env turns it
                            into joint targets with the same inverse kinematics the experts use.

Reset options: `instruction="shuffled"` makes the instruction name another object of the same scene (a distractor;
genba.sim.scene.shuffle_instruction), for grounding checks; the default "as_is" keeps the task's own.

Reward 1.0 on each step where the task's success predicate holds (genba.sim.tasks), else 0.0; the episode
terminates on success, or `after_success` steps after the first success when that option is set (the predicate is
then judged on every later step too: `success_trace` holds it per step, the `next.success` labels a world model's
success head learns from, positives and negatives after the task was done). It is truncated at the time limit, or
early when the physics becomes unstable (NaN / huge velocities / MuJoCo's own instability warnings): then
info["truncation_reason"] says why and the observation is the last valid one.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from genba import keys
from genba.sim.config import EnvConfig
from genba.sim.ik import ArmIK
from genba.sim.model import ARM_JOINTS, GRIPPER_BODIES, JOINT_LIMITS, TIMESTEP, TIP_SITE, build_model
from genba.sim.render import SceneRenderer
from genba.sim.scene import ENV_STATE_DIM, INSTRUCTION_MODES, N_SLOTS, SLOT_DIM, sample_spec, shuffle_instruction
from genba.sim.tasks import get_task

MAX_QVEL = 200.0  # rad/s or m/s: beyond this the simulation is considered blown up
_INSTABILITY_WARNINGS = (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQVEL,
                         mujoco.mjtWarning.mjWARN_BADQPOS)  # fmt: skip
EE_DELTA_MAX = np.array([0.03, 0.03, 0.03, 0.3], dtype=np.float32)


class GenbaEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str = "pick_place", render_mode: str | None = None, **overrides: Any) -> None:
        self._task = get_task(task)
        self.cfg = EnvConfig(**overrides)
        self.task = task
        self.task_description = ""
        self.fps = self.cfg.fps
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.fps}
        self.joint_names = keys.JOINTS
        self.joint_limits = JOINT_LIMITS.copy()  # (6, 2)
        self.max_episode_steps = self.cfg.max_episode_steps or -(-self._task.max_steps * self.fps // 10)  # same seconds
        self.n_substeps = max(1, round(1.0 / (self.fps * TIMESTEP)))
        size = self.cfg.image_size

        spaces: dict[str, gym.Space] = {}
        if self.cfg.cameras:
            img = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
            spaces[keys.PIXELS] = gym.spaces.Dict({c: img for c in self.cfg.cameras})
        if self.cfg.depth:
            dep = gym.spaces.Box(0.0, 1000.0, (size, size), np.float32)  # the sky reads as the far plane
            spaces[keys.DEPTH] = gym.spaces.Dict({c: dep for c in self.cfg.cameras})
        spaces[keys.AGENT_POS] = gym.spaces.Box(JOINT_LIMITS[:, 0] - 0.1, JOINT_LIMITS[:, 1] + 0.1, dtype=np.float32)
        spaces[keys.ENV_STATE] = gym.spaces.Box(-10.0, 10.0, (ENV_STATE_DIM,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        if self.cfg.action_mode == "joint":
            self.action_space = gym.spaces.Box(JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1], dtype=np.float32)
        else:
            lo = np.concatenate([-EE_DELTA_MAX, JOINT_LIMITS[5:, 0]]).astype(np.float32)
            hi = np.concatenate([EE_DELTA_MAX, JOINT_LIMITS[5:, 1]]).astype(np.float32)
            self.action_space = gym.spaces.Box(lo, hi, dtype=np.float32)
            self._ik = ArmIK()

        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: SceneRenderer | None = None
        self._spec: dict = {}
        self._last_obs: dict | None = None

    # ----------------------------------------------------------------- episode set-up
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        ep_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31 - 1))
        instruction = (options or {}).get("instruction", "as_is")
        if instruction not in INSTRUCTION_MODES:
            raise ValueError(f"reset option instruction={instruction!r} is not one of {', '.join(INSTRUCTION_MODES)}")
        self._spec = sample_spec(self.task, ep_seed, self.cfg.lang, self.cfg.randomize)
        if instruction == "shuffled":  # another object named; the scene (and what success means) unchanged
            shuffle_instruction(self._spec)
        self._spec.update(image_size=self.cfg.image_size, fps=self.fps)
        self.task_description = self._spec["instruction"]
        self.model = build_model(self._spec)
        self.data = mujoco.MjData(self.model)
        m, d = self.model, self.data
        self._qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        q0 = np.asarray(self._spec["init_qpos"])
        d.qpos[self._qadr] = q0
        d.qpos[m.jnt_qposadr[m.joint("gripper_right").id]] = q0[5]
        d.ctrl[:] = q0
        mujoco.mj_forward(m, d)

        self._tip = m.site(TIP_SITE).id
        self._gripper_bodies = {m.body(b).id for b in GRIPPER_BODIES}
        slots = {o["slot"]: o for o in self._spec["objects"]}
        self._slot_idx = np.array([s for s in range(N_SLOTS) if s in slots])
        self._slot_body = np.array([m.body(slots[s]["name"]).id for s in self._slot_idx])
        self._objects = {o["name"]: o for o in self._spec["objects"]}
        self._bodies = {name: m.body(name).id for name in self._objects}
        self._state = np.zeros((N_SLOTS, SLOT_DIM), np.float32)
        self._warnings = np.array([d.warning[w].number for w in _INSTABILITY_WARNINGS])
        self._steps = 0
        self.success_trace: list[bool] = []  # per step: the task's predicate after that step's action
        self._succeeded_at: int | None = None
        if self.cfg.action_mode == "ee_delta":
            pos, _ = self._ik.fk(q0)
            self._cmd = np.array([*pos, self._ik.tool_yaw(q0)])

        if self.cfg.cameras or self.render_mode == "rgb_array":
            if self._renderer is None:
                self._renderer = SceneRenderer(m, self.cfg.image_size)
            else:
                self._renderer.set_model(m)
            self._cam_ids = [m.camera(c).id for c in self.cfg.cameras]
        obs = self._observe()
        self._last_obs = obs
        return obs, {keys.INFO_SUCCESS: False, keys.INFO_PHYSICS: copy.deepcopy(self._spec["physics"])}

    def episode_spec(self) -> dict:
        """Everything that defines this episode's scene (JSON-able); genba.sim.replay.Replayer rebuilds it."""
        if not self._spec:
            raise RuntimeError("episode_spec() before reset()")
        return copy.deepcopy(self._spec)

    # ----------------------------------------------------------------- stepping
    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        if self.data is None:
            raise RuntimeError("step() before reset()")
        m, d = self.model, self.data
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        if self.cfg.action_mode == "ee_delta":
            action = self._ee_to_joint(action)
        d.ctrl[:] = np.clip(np.nan_to_num(action), JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        mujoco.mj_step(m, d, nstep=self.n_substeps)
        # mj_step leaves positions-derived quantities one substep behind qpos: refresh the cheap ones so that
        # images, environment_state and agent_pos describe the same instant
        mujoco.mj_kinematics(m, d)
        mujoco.mj_camlight(m, d)
        self._steps += 1

        reason = self._instability()
        if reason:
            self.success_trace.append(False)
            return self._last_obs, 0.0, False, True, {keys.INFO_SUCCESS: False, keys.INFO_TRUNCATION_REASON: reason}
        obs = self._observe()
        self._last_obs = obs
        success = bool(self._task.success(self))
        self.success_trace.append(success)
        if success and self._succeeded_at is None:
            self._succeeded_at = self._steps
        terminated = self._succeeded_at is not None and self._steps - self._succeeded_at >= self.cfg.after_success
        info: dict[str, Any] = {keys.INFO_SUCCESS: success}
        truncated = not terminated and self._steps >= self.max_episode_steps
        if truncated:
            info[keys.INFO_TRUNCATION_REASON] = "time_limit"
        return obs, float(success), terminated, truncated, info

    def _ee_to_joint(self, action: np.ndarray) -> np.ndarray:
        delta = np.clip(action[:4], -EE_DELTA_MAX, EE_DELTA_MAX)
        self._cmd[:3] = np.clip(self._cmd[:3] + delta[:3], [-0.3, -0.3, 0.005], [0.35, 0.3, 0.35])
        self._cmd[3] += delta[3]
        q = self.data.qpos[self._qadr]
        arm = self._ik.solve(self._cmd[:3], float(self._cmd[3]), q)
        return np.concatenate([arm, action[4:5]])

    def _instability(self) -> str:
        d = self.data
        counts = np.array([d.warning[w].number for w in _INSTABILITY_WARNINGS])
        bad = counts > self._warnings
        if bad.any():
            self._warnings = counts
            names = ",".join(w.name for w, b in zip(_INSTABILITY_WARNINGS, bad, strict=True) if b)
            return f"physics_unstable: mujoco warning {names}"
        if not (np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()):
            return "physics_nan: NaN or Inf in the state"
        if np.abs(d.qvel).max(initial=0.0) > MAX_QVEL:
            return f"physics_unstable: joint velocity above {MAX_QVEL:g}"
        return ""

    # ----------------------------------------------------------------- observation and success
    def _observe(self) -> dict:
        d = self.data
        obs: dict[str, Any] = {}
        if self.cfg.cameras:
            r, cams = self._renderer, self.cfg.cameras
            obs[keys.PIXELS] = {c: r.rgb(d, i) for c, i in zip(cams, self._cam_ids, strict=True)}
            if self.cfg.depth:
                obs[keys.DEPTH] = {c: r.depth(d, i) for c, i in zip(cams, self._cam_ids, strict=True)}
        obs[keys.AGENT_POS] = d.qpos[self._qadr].astype(np.float32)
        state = self._state
        state[self._slot_idx, :3] = d.xpos[self._slot_body]
        state[self._slot_idx, 3:] = d.xquat[self._slot_body]
        obs[keys.ENV_STATE] = state.reshape(-1).copy()
        return obs

    # ----------------------------------------------------------------- what the tasks' success predicates read
    def body_pos(self, name: str) -> np.ndarray:
        """World position (3,) of a scene object ("object", "goal", "distractor0", ...) now."""
        return self.data.xpos[self._bodies[name]]

    def tip_pos(self) -> np.ndarray:
        """World position (3,) of the gripper tip (between the fingertips) now."""
        return self.data.site_xpos[self._tip]

    def scene_object(self, name: str) -> dict:
        """The episode spec's entry of a scene object (shape, size, yaw, ...); see genba.sim.scene."""
        return self._objects[name]

    def touching_gripper(self, name: str) -> bool:
        """Whether a scene object is in contact with the gripper (a released object is not)."""
        d, m, body = self.data, self.model, self._bodies[name]
        for i in range(d.ncon):
            b1, b2 = m.geom_bodyid[d.contact.geom1[i]], m.geom_bodyid[d.contact.geom2[i]]
            if (b1 == body and b2 in self._gripper_bodies) or (b2 == body and b1 in self._gripper_bodies):
                return True
        return False

    def judge_pose(self, q: np.ndarray) -> bool:
        """The task's success predicate with the arm at joint positions q (6,) (gripper last) and every object where
        it is now, by kinematics alone (nothing is stepped; the state is restored): for a pose the arm did not reach
        here, such as a world model's imagined one. Only for tasks whose success reads nothing the arm moves
        (Task.arm_only_success); others raise ValueError."""
        if not self._task.arm_only_success:
            raise ValueError(f"task {self.task}'s success depends on objects the arm moves: a pose cannot judge it")
        if self.data is None:
            raise RuntimeError("judge_pose() before reset()")
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (len(ARM_JOINTS),):
            raise ValueError(f"q has shape {q.shape}, expected ({len(ARM_JOINTS)},)")
        m, d = self.model, self.data
        saved = d.qpos.copy()
        q = np.clip(np.nan_to_num(q), JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        d.qpos[self._qadr] = q
        d.qpos[m.jnt_qposadr[m.joint("gripper_right").id]] = q[5]  # the mirrored finger, as at reset
        mujoco.mj_kinematics(m, d)
        try:
            return bool(self._task.success(self))
        finally:
            d.qpos[:] = saved
            mujoco.mj_kinematics(m, d)

    # ----------------------------------------------------------------- rendering and clean-up
    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self.data is None:
            return None
        return self._renderer.rgb(self.data, self.model.camera("front").id)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
