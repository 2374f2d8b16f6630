"""WorldModelEnv: a genba task's gymnasium env whose `step` runs a trained world model instead of MuJoCo.

    import genba.worldmodel
    env = genba.worldmodel.make_env("reach", run="runs/wm-reach")             # reset from a real MuJoCo reset
    env = genba.worldmodel.make_env("reach", run="runs/wm-reach", reset="dataset", data="data/reach")
    obs, info = env.reset(seed=1_000_000)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Spaces: those of `genba.sim.make(task, ...)` with the same options: `pixels` (camera -> (H, W, 3) uint8, the cameras
asked for, a subset of the model's), `agent_pos` (6,) float32, `environment_state` (35,) float32, joint actions
(6,); attributes `task`, `task_description`, `fps`, `max_episode_steps`; `info["is_success"]` and
`info["success_prob"]` (the success head's, when the run has one). `cameras` and `image_size` default to the
model's; another image size is resized from the model's frames. The world model predicts frames and joint state
only: `environment_state` stays the reset's (object poses as they were; a policy that reads them, like the scripted
expert, plans on the first frame) and `depth` is refused, as are `action_mode=ee_delta` and an `fps` other than the
training data's.

Reset (`reset="sim"`, the default): a real MuJoCo reset of the task with `seed` (the same scene, first frame, joint
state and instruction as `genba.sim.make(task).reset(seed=seed)`; `options={"instruction": "shuffled"}` as there,
the world model still reading the original instruction, since success keeps its meaning). `reset="dataset"`: the
first frame of an episode of `data` (default: the run's own dataset), the episode drawn from `seed`, or
`options={"episode": i, "frame": t}`.

Step: the action (clipped to the joint limits) goes to `WorldModel.imagine_step` (KV cache, one frame per step);
the next frame and joint state (clipped to the observation space) come back. Success is judged by `judge`:
- `head` (the default): the success head's probability of `next.success` above `success_threshold` for
  `success_steps` consecutive steps (1 by default; a head trained on `genba collect after_success=K` labels stays
  high once the task is done, a false alarm often does not). A run without a success head is refused in one line.
- `sim`: the task's own success predicate (the one MuJoCo judges with) on the imagined joint state, in the reset's
  MuJoCo scene with every object where the reset put it (GenbaEnv.judge_pose: kinematics, no physics), for
  `success_steps` consecutive steps. Only for tasks whose success reads nothing the arm moves (`reach`); others are
  refused in one line. It needs no success head, and it is only as right as the imagined joints.
A success ends the episode (reward 1); else it is truncated at the task's time limit (`truncation_reason`
"time_limit"), as in MuJoCo. A run trained on another task is refused in one line.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from genba import keys
from genba.errors import GenbaError

RESETS = ("sim", "dataset")
JUDGES = ("head", "sim")


@dataclass
class WorldModelEnvConfig:
    run: str = field(default="", metadata={"help": "world-model run folder (its best/, else last/) or checkpoint"})
    reset: str = field(default="sim", metadata={"help": "sim: a MuJoCo reset; dataset: a dataset episode's frame"})
    data: str = field(default="", metadata={"help": "dataset for reset=dataset (empty: the run's own)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto"})
    judge: str = field(
        default="head", metadata={"help": "head: the run's success head; sim: the task's predicate on the imagined "
                                          "joints (tasks whose success reads only the arm: reach)"}
    )  # fmt: skip
    success_threshold: float = field(default=0.5, metadata={"help": "success-head probability that ends an episode"})
    success_steps: int = field(
        default=1, metadata={"help": "consecutive successful steps (judge=head: above success_threshold) that end an "
                                     "episode as a success"}
    )  # fmt: skip
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})

    def __post_init__(self) -> None:
        if not self.run:
            raise GenbaError("run= is required: a world-model run folder (genba train-worldmodel)")
        if self.reset not in RESETS:
            raise GenbaError(f"reset={self.reset!r} is not one of {', '.join(RESETS)}")
        if self.judge not in JUDGES:
            raise GenbaError(f"judge={self.judge!r} is not one of {', '.join(JUDGES)}")
        if self.judge == "sim" and self.reset != "sim":
            raise GenbaError("judge=sim needs reset=sim: the task's predicate reads the MuJoCo reset's scene")
        if not 0.0 < self.success_threshold < 1.0:
            raise GenbaError(f"success_threshold={self.success_threshold!r} must be in (0, 1)")
        if not isinstance(self.success_steps, int) or not 1 <= self.success_steps <= 100:
            raise GenbaError(f"success_steps={self.success_steps!r} must be an integer in [1, 100]")


def make_env(task: str, run: str, **env_options: Any) -> WorldModelEnv:
    """The world-model env of `task` from run `run`; env_options are WorldModelEnvConfig's fields (reset, data,
    device, success_threshold, success_steps, threads) and genba.sim.make's (cameras, image_size, lang, ...)."""
    return WorldModelEnv(task, _own_config(run, env_options), **env_options)


def _own_config(run: str, env_options: dict) -> WorldModelEnvConfig:
    """The WorldModelEnvConfig of run `run` from the options that are its fields (popped from env_options)."""
    names = {f.name for f in dataclasses.fields(WorldModelEnvConfig)}
    return WorldModelEnvConfig(run=str(run), **{k: env_options.pop(k) for k in list(env_options) if k in names})


def load_worldmodel(run: str | Path, device: str = "cpu", judge: str = "head") -> tuple[Any, Any, Path]:
    """(model in eval mode, its config, the checkpoint folder) of a run; with judge="head" its model must have a
    success head, else a one-line GenbaError says how to get one."""
    import torch

    from genba.train.checkpoint import load_model, read_config
    from genba.worldmodel.evaluate import checkpoint_folder

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = checkpoint_folder(run)
    if judge == "head":
        _check_head(read_config(folder, kind="worldmodel")[1], folder)
    model, config = load_model(folder, kind="worldmodel", device=device)
    return model.eval(), config, folder


def check_options(task: str, run: str, **env_options: Any) -> None:
    """make_env's one-line refusals (no success head, another task, depth, ...) from the run's config alone, with
    no weights loaded and no env built: what `genba eval` checks before any episode."""
    from genba.train.checkpoint import read_config
    from genba.worldmodel.evaluate import checkpoint_folder

    own = _own_config(run, env_options)
    folder = checkpoint_folder(own.run)
    config = read_config(folder, kind="worldmodel")[1]
    _check_judge(task, own.judge, config, folder)
    _check_fit(task, config, folder, env_options)


def _check_judge(task: str, judge: str, config: Any, folder: Path) -> None:
    if judge == "head":
        _check_head(config, folder)
        return
    from genba.sim.tasks import get_task

    if not get_task(task).arm_only_success:
        raise GenbaError(f"judge=sim: task {task}'s success depends on objects the arm moves, which the world model "
                         "does not report; use judge=head (the run's success head)")  # fmt: skip


def _check_head(config: Any, folder: Path) -> None:
    if not config.success_head:
        raise GenbaError(
            f"world model {folder} has no success head, so it cannot end episodes: retrain it on data with failures "
            "(genba collect ... noise=0.1 keep_failed=true; genba train-worldmodel ... success=true)"
        )


def _check_fit(task: str, m: Any, folder: Path, sim_options: dict) -> tuple[list[str], int]:
    """The refusals of a run's config `m` for this task and these sim options; pops and returns the cameras and
    image size of the observations (default: the model's), sets the fps to the model's."""
    if m.tasks and task not in m.tasks:
        raise GenbaError(f"world model {folder} was trained on {', '.join(m.tasks)}, not task={task}")
    if (m.state_dim, m.action_dim) != (len(keys.JOINTS), len(keys.JOINTS)):
        raise GenbaError(
            f"world model {folder} has state {m.state_dim} / action {m.action_dim} values; a genba "
            f"arm task needs {len(keys.JOINTS)} / {len(keys.JOINTS)}"
        )
    if sim_options.get("depth"):
        raise GenbaError("depth=true: the world model predicts no depth")
    if sim_options.get("action_mode", "joint") != "joint":
        raise GenbaError(f"action_mode={sim_options['action_mode']}: the world model was trained on joint actions")
    if m.fps and sim_options.setdefault("fps", m.fps) != m.fps:
        raise GenbaError(f"fps={sim_options['fps']}: the world model was trained at {m.fps} fps")
    cameras = list(sim_options.pop("cameras", m.cameras))
    unknown = [c for c in cameras if c not in m.cameras]
    if unknown:
        raise GenbaError(f"camera {unknown[0]!r} is not one the world model predicts ({', '.join(m.cameras)})")
    return cameras, int(sim_options.pop("image_size", m.image_size))


class WorldModelEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str, cfg: WorldModelEnvConfig, render_mode: str | None = None, **sim_options: Any) -> None:
        import torch

        from genba.sim import make

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.model, self.mcfg, self.checkpoint = load_worldmodel(cfg.run, cfg.device, cfg.judge)
        _check_judge(task, cfg.judge, self.mcfg, self.checkpoint)
        m = self.mcfg
        cameras, self.image_size = _check_fit(task, m, self.checkpoint, sim_options)
        # the observation's spaces come from the task's own env with the same options; the model's cameras at the
        # model's size are what a MuJoCo reset renders for it
        shown = make(task, cameras=cameras, image_size=self.image_size, **sim_options)
        self.observation_space, self.action_space = shown.observation_space, shown.action_space
        self.max_episode_steps, self.fps = shown.max_episode_steps, shown.fps
        self.sim = make(task, cameras=list(m.cameras), image_size=m.image_size, **sim_options)
        self.task, self.task_description, self.cameras = task, "", cameras
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.fps}
        self._dataset: Any = None
        self._dream: Any = None
        self._scene: Any = None  # the MuJoCo env of this episode's reset (judge=sim)
        self._obs: dict | None = None
        self._spec: dict = {}
        self._steps = self._above = 0

    # ----------------------------------------------------------------- reset
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        import torch

        super().reset(seed=seed)
        options = dict(options or {})
        if self.cfg.reset == "sim":
            obs, info = self.sim.reset(seed=seed, options=options or None)
            self._spec = self.sim.unwrapped.episode_spec()
            # judge=sim reads this episode's scene: a shallow copy keeps its MuJoCo model and data, which the next
            # reset replaces rather than changes (batched imagination resets many episodes on one shared MuJoCo env)
            self._scene = copy.copy(self.sim.unwrapped)
            images, state = obs[keys.PIXELS], obs[keys.AGENT_POS]
            env_state, instruction = obs[keys.ENV_STATE], self.sim.unwrapped.task_description
            info = {keys.INFO_SUCCESS: False, **{k: v for k, v in info.items() if k != keys.INFO_SUCCESS}}
        else:
            images, state, env_state, instruction = self._dataset_frame(options)
            info = {keys.INFO_SUCCESS: False}
        self.task_description = instruction
        judged = self._spec.get("original_instruction", instruction)  # success keeps the original object's meaning
        frames = {c: torch.from_numpy(np.ascontiguousarray(images[c])).permute(2, 0, 1)[None] for c in images}
        self._dream = self.model.imagine(frames, torch.from_numpy(np.asarray(state, np.float32))[None], [judged])
        self._env_state = np.asarray(env_state, np.float32).copy()
        self._steps = self._above = 0
        self._obs = self._observation(images, state)
        return self._obs, info

    def _dataset_frame(self, options: dict) -> tuple[dict, np.ndarray, np.ndarray, str]:
        """(images {cam: (H, W, 3) uint8}, state (S,), environment_state (E,), instruction) of a dataset frame."""
        if options.get("instruction", "as_is") != "as_is":
            raise GenbaError(f"instruction={options['instruction']}: a dataset reset keeps the episode's instruction")
        ds = self._frames()
        n = ds.meta.total_episodes
        episode = int(options.get("episode", self.np_random.integers(n)))
        if not 0 <= episode < n:
            raise GenbaError(f"episode={episode} is not in {ds.root} (episodes 0..{n - 1})")
        start, end = int(ds.ep_from[episode]), int(ds.ep_to[episode])
        frame = int(options.get("frame", 0))
        if not 0 <= frame < end - start:
            raise GenbaError(f"frame={frame} is not in episode {episode} of {ds.root} ({end - start} frames)")
        sample = ds[start + frame]  # every episode's rows: sample i is absolute frame i
        images = {c: sample[keys.image_key(c)][0].permute(1, 2, 0).numpy() for c in self.mcfg.cameras}
        state = sample[self.mcfg.state_key][0].numpy()
        env_state = sample[keys.OBS_ENV_STATE][0].numpy() if keys.OBS_ENV_STATE in sample else None
        if env_state is None or env_state.shape != self.observation_space[keys.ENV_STATE].shape:
            env_state = np.zeros(self.observation_space[keys.ENV_STATE].shape, np.float32)
        from genba.datasets.commit import read_episode_meta

        meta = read_episode_meta(ds.root, episode) or {}
        self._spec = copy.deepcopy(meta.get("spec") or {"task": self.task, "lang": "en"})
        self._spec.setdefault("lang", "en")
        return images, state, env_state, str(sample[keys.TASK])

    def _frames(self) -> Any:
        """The reset dataset's frames at the model's size, with environment_state when it has one (built once)."""
        if self._dataset is None:
            from genba.datasets.clips import ClipConfig, ClipDataset
            from genba.datasets.split import read_split

            data = self.cfg.data or read_split(Path(self.checkpoint).parent / "split.json")["dataset"]
            probe = ClipConfig(data=data, obs_frames=1, action_horizon=1, image_size=self.mcfg.image_size,
                               cameras=list(self.mcfg.cameras), state_key=self.mcfg.state_key,
                               action_key=self.mcfg.action_key)  # fmt: skip
            ds = ClipDataset(probe, progress=False)
            if keys.OBS_ENV_STATE in ds.meta.features:
                ds = ClipDataset(dataclasses.replace(probe, extra_keys=[keys.OBS_ENV_STATE]), progress=False)
            self._dataset = ds
        return self._dataset

    def episode_spec(self) -> dict:
        """The episode's scene (a MuJoCo reset's spec, or the dataset episode's from genba's metadata)."""
        if not self._spec:
            raise RuntimeError("episode_spec() before reset()")
        return copy.deepcopy(self._spec)

    # ----------------------------------------------------------------- step
    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        import torch

        out = self.model.imagine_step(self._dream, torch.from_numpy(self.model_action(action))[None])
        return self.stepped(out, 0)

    def model_action(self, action: np.ndarray) -> np.ndarray:
        """A step's action, checked and clipped to the joint limits: (A,) float32, what `imagine_step` takes."""
        if self._dream is None:
            raise RuntimeError("step() before reset()")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        return np.clip(np.nan_to_num(action), self.action_space.low, self.action_space.high)

    def stepped(self, out: dict, row: int) -> tuple[dict, float, bool, bool, dict]:
        """This episode's step result from row `row` of an `imagine_step` output (genba.worldmodel.batched steps
        many episodes in one batch): the observation, the success rule, the time limit."""
        images = {c: out["images"][c][row].permute(1, 2, 0).cpu().numpy() for c in self.mcfg.cameras}  # (H, W, 3)
        self._steps += 1
        self._obs = self._observation(images, out["state"][row].cpu().numpy())
        prob = None if out["success"] is None else float(out["success"][row])
        if self.cfg.judge == "sim":  # the imagined joints (as observed: clipped) in the reset's scene
            hit = self._scene.judge_pose(self._obs[keys.AGENT_POS])
        else:
            hit = prob > self.cfg.success_threshold
        self._above = self._above + 1 if hit else 0
        success = self._above >= self.cfg.success_steps
        info: dict[str, Any] = {keys.INFO_SUCCESS: success}
        if prob is not None:
            info["success_prob"] = prob
        truncated = not success and self._steps >= self.max_episode_steps
        if truncated:
            info[keys.INFO_TRUNCATION_REASON] = "time_limit"
        return self._obs, float(success), success, truncated, info

    def _observation(self, images: dict[str, np.ndarray], state: np.ndarray) -> dict:
        """The model's frames {cam: (h, w, 3) uint8} and state (S,) -> an observation in this env's spaces."""
        box = self.observation_space[keys.AGENT_POS]
        obs: dict[str, Any] = {}
        if self.cameras:
            obs[keys.PIXELS] = {c: _resize(images[c], self.image_size) for c in self.cameras}
        obs[keys.AGENT_POS] = np.clip(np.asarray(state, np.float32), box.low, box.high)
        obs[keys.ENV_STATE] = self._env_state.copy()
        self._last_images = images
        return obs

    # ----------------------------------------------------------------- rendering and clean-up
    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._obs is None:
            return None
        return self._last_images[self.mcfg.cameras[0]].copy()

    def close(self) -> None:
        self.sim.close()


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (size, size, 3) uint8, a copy (unchanged values when already that size)."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.array(image)
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
