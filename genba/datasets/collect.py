"""`genba collect`: run a task's scripted expert in MuJoCo and write the episodes as a LeRobotDataset v3.

    genba collect task=pick_place episodes=50 out=data/pick_place workers=2 lang=mixed

Dataset layout (written through lerobot 0.6's own LeRobotDataset; `LeRobotDataset("genba/<folder name>",
root=out)` loads it; repo_id = genba.datasets.writer.repo_id_for(out)):

- fps = the env's control rate (`fps=`, 10 Hz by default; 30 like LeRobot's SO-101 recordings); one frame per env
  step, frame t = observation before action t. The expert's motions are defined per second (same seconds at any
  rate; at 30 fps the gripper closes over 9 frames, genba.sim.experts).
- `observation.images.<camera>`: video (H, W, 3) uint8 RGB per camera (front, wrist), AV1 mp4 (lerobot's default
  encoder; lossy: decoded frames are close to, not equal to, the rendered ones).
- `observation.depth.<camera>` (only with depth=true): lerobot's native depth feature, a video (H, W, 1) flagged
  `info.is_depth_map`, written from float32 metres (12-bit log-quantized HEVC, lossless). Read back in millimetres
  by default; pass `depth_output_unit="m"` to LeRobotDataset for metres.
- `observation.state`: (6,) float32 joint positions, names = keys.JOINTS; the five arm joints in radians, the gripper
  as finger opening in metres (0 closed .. 0.032 open; genba.sim.model).
- `action`: (6,) float32 target joint positions (joint action mode), names = keys.JOINTS.
- `observation.environment_state`: (E,) float32 privileged object state, E/7 slots of pos xyz (m) + quat wxyz
  (slot 0 the object to manipulate, slot 1 the goal, then distractors, zero-padded), names slot<k>.<x|y|z|qw|...>.
- `task`: the episode's instruction, English or Japanese (lang=en|ja|mixed).
- `meta/genba/episodes.jsonl`: per episode `seed`, `attempt`, `success`, `length`, `task`, `spec` (the
  env's `episode_spec()`, enough for `genba.sim.replay.Replayer` to rebuild the scene), `physics` (sampled physical
  parameters), `truncation_reason`, `noise`. Read with `genba.datasets.commit.read_episode_meta(root, i)`.
- `meta/genba/audio/episode_<index>.flac` (audio=true): the instruction spoken in its language by one of `voices`
  (chosen by the seed among those speaking it), with optional synthesized factory noise at `audio_snr` dB; 16 kHz
  mono, listed in the episode's record as `audio` (path, voice, lang, sample_rate, seconds, noise, snr_db). lerobot
  ignores meta/genba, so the dataset loads as before; `genba.datasets.commit.read_episode_audio(root, i)` reads it.
- `meta/genba/commit.json`: genba's commit record; `meta/genba/pending/` holds the write-ahead log of episodes
  not yet finalized into lerobot's files (empty after a run that ends normally or by Ctrl-C; after a SIGKILL the
  next run replays it).
- Files: lerobot's v3 layout, one data parquet, one episode-metadata parquet and one mp4 per camera per segment of
  up to 25 episodes (genba/datasets/writer.py explains the segments and why a kill loses at most one episode).
- Depth beyond 10 m (the sky behind the scene) is stored as 10 m: lerobot's default depth range is [0.01, 10] m,
  quantization error inside it is below 1 mm at the scene's distances.

Seeds and failures: expert attempt j uses seed `seed + j`. By default (keep_failed=false) the dataset keeps only
successful attempts, a training set of expert demonstrations, and collects until it holds `episodes` of them (giving
up after 10 x episodes + 10 attempts); `expert_success_rate` counts every attempt. keep_failed=true keeps every
attempt (useful with noise>0 for recovery data); episode i then has seed `seed + i`.

Noise and labels: noise=sigma adds N(0, sigma^2) rad to the expert's five arm joint targets at every step
(genba.sim.experts), and by default `action` records what the arm executed, noise included.
clean_labels=true (DART-style data) executes the same noisy actions but records the expert's clean action as
`action`: the states drift off the expert's path and the labels steer back (the expert plans from its commanded tip,
not the noisy joints). Only `action` differs from the same command without it: the observations and outcomes are
the same. Needs noise > 0 and the expert; part of the identity; each episode's record says `clean_labels: true`.

Who acts and success labels: `policy=` other than the expert (`hold`, `random`, `scripted:noise=0.3`, the registry's
built-in weak policies, a VLA run folder, or a list of them taken in turn per attempt) with keep_failed=true gives
the failures and near-misses a world model's success head needs, or a policy's own episodes to learn from;
`after_success=K` records K steps past the first success and adds LeRobot's per-frame `next.success` (1,) bool
column (the task's predicate after each action; genba/datasets/simulate.py runs one attempt). Both are part of the
identity.

Resuming: running the same command again continues where a previous (killed, interrupted or finished) run stopped,
with the same seeds and no duplicates; a larger `episodes=` extends the dataset. The same `out` with other content
options (task, image_size, cameras, depth, lang, seed, noise, clean_labels, keep_failed) is an error, never an
overwrite.

Workers: `workers=N` simulates episodes in N spawned processes; the main process is the one writer and commits
episodes in attempt order, so the dataset is the same for any N. That one writer caps a machine at about 107
frames/s; `shards=N` (N > 1) has each of the `workers` processes simulate and write whole seed-disjoint shards
instead, merged by LeRobot's own merge like executor=ray (the same dataset, episode for episode).

Ray: `executor=ray shards=N [ray_address=auto|host:port]` runs the same shards as Ray tasks (on a cluster). Either
way the result is the unsharded dataset episode for episode, and a rerun after a killed driver or a failed shard
redoes only the missing shards (genba/datasets/distributed.py, shards.py).

Imagined episodes: `backend=worldmodel worldmodel=<run>` runs the same expert, seeds and loop in the world model's env
(genba.worldmodel.make_env: each episode starts from the MuJoCo reset of its seed, every later frame and joint state
is imagined, the run's success head decides success, or with `judge=sim` the task's predicate on the imagined joints)
and writes them through the same writer; each episode's record says `synthetic: true` and names the `worldmodel`,
and these options are part of the dataset's identity.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genba import keys
from genba.datasets.simulate import close_envs, simulate_episode
from genba.errors import GenbaError
from genba.io import one_line
from genba.sim.config import LANGS
from genba.sim.tasks import TASKS

# The task registry and the env's languages; neither import pulls in MuJoCo, so `--help` stays fast.
TASK_NAMES = tuple(TASKS)
SLOT_FIELDS = ("x", "y", "z", "qw", "qx", "qy", "qz")
# Options that define the dataset's content: reopening a folder with other values is an error.
IDENTITY_FIELDS = ("task", "image_size", "cameras", "depth", "lang", "seed", "noise", "keep_failed")
# Content options added later: part of the identity only when not at their default, so that datasets written before
# they existed still resume.
LATER_IDENTITY_FIELDS = {"multisampling": True, "vcodec": "av1", "audio": False, "voices": [], "audio_noise": "none",
                         "audio_snr": 20.0, "backend": "mujoco", "worldmodel": "", "policy": "scripted",
                         "after_success": 0, "clean_labels": False, "judge": "head"}  # fmt: skip
VCODECS = {"av1": "libsvtav1", "h264": "h264", "hevc": "hevc"}  # genba's name -> lerobot's (FFmpeg's) encoder
AV1_PRESETS = tuple(str(p) for p in range(14))  # SVT-AV1: 0 slowest .. 13 fastest (lerobot's default 12)
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# libsvtav1 (lerobot's default video codec) dies of SIGFPE on frames narrower than 25 pixels: no error, no dataset.
MIN_IMAGE_SIZE = 32
EXECUTORS = ("local", "ray")
BACKENDS = ("mujoco", "worldmodel")


@dataclass
class CollectConfig:
    task: str = field(default="pick_place", metadata={"help": f"task: {', '.join(TASK_NAMES)}"})
    episodes: int = field(default=10, metadata={"help": "episodes the dataset should hold (more extends it)"})
    out: str = field(default="", metadata={"help": "dataset folder (default outputs/<task>)"})
    seed: int = field(default=0, metadata={"help": "seed of the first attempt; attempt j uses seed + j"})
    image_size: int = field(default=128, metadata={"help": "camera image height and width in pixels"})
    cameras: list[str] = field(
        default_factory=lambda: list(keys.CAMERAS), metadata={"help": "cameras to record: subset of front,wrist"}
    )
    lang: str = field(default="en", metadata={"help": "instruction language: en, ja or mixed"})
    depth: bool = field(default=False, metadata={"help": "also record depth per camera (lerobot depth video)"})
    noise: float = field(default=0.0, metadata={"help": "expert action noise (recovery data); 0 = clean demos"})
    clean_labels: bool = field(
        default=False, metadata={"help": "with noise>0: execute the noisy actions but record the expert's clean ones "
                                 "as the action labels (DART-style recovery data); false = record what was executed"},
    )  # fmt: skip
    keep_failed: bool = field(default=False, metadata={"help": "keep failed expert attempts in the dataset"})
    workers: int = field(
        default=1,
        metadata={"help": "processes simulating episodes in parallel (one writer), or with shards=N simulating and "
                  "writing shards; with executor=ray and no ray_address, the CPUs of the local Ray instance"},
    )  # fmt: skip
    fps: int = field(default=10, metadata={"help": "control rate and dataset fps (30 = LeRobot's SO-101 datasets)"})
    executor: str = field(
        default="local",
        metadata={
            "help": "local (this process + workers, or with shards=N local shard processes) "
            "or ray (shards as Ray tasks); shards are merged by LeRobot's merge"
        },
    )
    shards: int = field(
        default=0,
        metadata={"help": "shards per round of attempts, each simulated and written by one process (a Ray task or one "
                  "of the local workers) and merged by LeRobot's merge; 0 = workers with ray, 1 (one writer) local"},
    )  # fmt: skip
    ray_address: str = field(
        default="", metadata={"help": "executor=ray: '' starts a local Ray instance; auto, or host:port of a cluster"}
    )
    multisampling: bool = field(
        default=True, metadata={"help": "MuJoCo's 4x offscreen anti-aliasing; false renders faster (edges only differ)"}
    )
    vcodec: str = field(default="av1", metadata={"help": "camera video codec: av1 (lerobot's default), h264 or hevc"})
    video_preset: str = field(
        default="",
        metadata={"help": "encoder speed preset ('' = lerobot's: 12 for av1; ultrafast..veryslow for h264/hevc)"},
    )

    audio: bool = field(
        default=False, metadata={"help": "speak each episode's instruction (meta/genba/audio/*.flac, genba.speech)"}
    )
    voices: list[str] = field(
        default_factory=list,
        metadata={"help": "audio=true: voices engine:name[:speed[:pitch]], chosen per episode by seed among those "
                  "speaking its language; [] = espeak:en-us and openjtalk:mei"},
    )  # fmt: skip
    audio_noise: str = field(default="none", metadata={"help": "audio=true: none, fan, motor or factory noise"})
    audio_snr: float = field(default=20.0, metadata={"help": "audio=true: speech-to-noise ratio in dB"})
    backend: str = field(default="mujoco", metadata={"help": "mujoco, or worldmodel: imagined episodes (synthetic)"})
    worldmodel: str = field(default="", metadata={"help": "backend=worldmodel: the world-model run folder"})
    judge: str = field(
        default="head", metadata={"help": "backend=worldmodel: head (the run's success head) or sim (the task's "
                                          "predicate on the imagined joints; reach)"}
    )  # fmt: skip
    policy: Any = field(
        default="scripted",
        metadata={"help": "who acts: scripted (the expert, with noise=), a built-in weak policy for failure data "
                  "(hold, random, scripted:noise=0.3, ...), a VLA run folder (its own episodes, e.g. imagined), "
                  "or a list of them: attempt j acts with the (j mod n)-th"},
    )  # fmt: skip
    after_success: int = field(
        default=0, metadata={"help": "steps recorded after the first success, with a per-frame next.success column "
                             "(labels for a world model's success head); 0 = stop at success, no column"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r} (valid: {', '.join(TASK_NAMES)})")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes={self.episodes!r} must be an integer >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.image_size, int) or not MIN_IMAGE_SIZE <= self.image_size <= 1024:
            raise ValueError(
                f"image_size={self.image_size!r} must be an integer in [{MIN_IMAGE_SIZE}, 1024] "
                "(lerobot's AV1 video encoder needs images at least 25 pixels wide)"
            )
        self.cameras = list(self.cameras)
        bad = [c for c in self.cameras if c not in keys.CAMERAS]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras={self.cameras!r}: each must be one of {', '.join(keys.CAMERAS)}, no repeats")
        if self.lang not in LANGS:
            raise ValueError(f"lang={self.lang!r} is not one of {', '.join(LANGS)}")
        if self.depth and not self.cameras:
            raise ValueError("depth=true needs at least one camera (cameras is empty)")
        if not isinstance(self.noise, int | float) or not math.isfinite(self.noise) or self.noise < 0:
            raise ValueError(f"noise={self.noise!r} must be a finite number >= 0")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 64:
            raise ValueError(f"workers={self.workers!r} must be an integer in [1, 64]")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 100:
            raise ValueError(f"fps={self.fps!r} must be an integer in [1, 100]")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor={self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if not isinstance(self.shards, int) or not 0 <= self.shards <= 100_000:
            raise ValueError(f"shards={self.shards!r} must be an integer >= 0 (0 = workers with ray, 1 local)")
        if self.shards == 0:
            self.shards = self.workers if self.executor == "ray" else 1
        if self.vcodec not in VCODECS:
            raise ValueError(f"vcodec={self.vcodec!r} is not one of {', '.join(VCODECS)}")
        presets = AV1_PRESETS if self.vcodec == "av1" else X26X_PRESETS
        if self.video_preset and self.video_preset not in presets:  # FFmpeg would fail only at the first video
            raise ValueError(
                f"video_preset={self.video_preset!r} for vcodec={self.vcodec} is not one of {', '.join(presets)}"
            )
        if self.ray_address and self.executor != "ray":
            raise ValueError(f"ray_address={self.ray_address!r} needs executor=ray")
        self._check_audio()
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if (self.backend == "worldmodel") != bool(self.worldmodel):
            raise ValueError("backend=worldmodel needs worldmodel=<run>, and worldmodel= needs backend=worldmodel")
        if self.judge not in ("head", "sim") or (self.judge != "head" and not self.worldmodel):
            raise ValueError(f"judge={self.judge!r}: head or sim, and only with backend=worldmodel")
        if self.worldmodel and self.sharded:
            raise ValueError("backend=worldmodel needs executor=local and shards=1")
        self._check_policy()
        if not self.out:
            self.out = f"outputs/{self.task}"

    def _check_policy(self) -> None:
        from genba.policies.registry import builtin_options

        if isinstance(self.policy, list | tuple) and len(self.policy) == 1:
            self.policy = self.policy[0]
        if not self.policies() or not all(isinstance(p, str) for p in self.policies()):
            raise ValueError(f"policy={self.policy!r} must be a policy name or a non-empty list of them")
        for policy in self.policies():
            if policy != "scripted" and builtin_options(policy) is None and not Path(policy).is_dir():
                raise ValueError(f"policy={policy!r} is neither a built-in policy (scripted, hold, random, linear, "
                                 "with options as scripted:noise=0.3) nor a VLA run folder")  # fmt: skip
        if self.noise and self.policy != "scripted":
            raise ValueError(f"noise={self.noise} is the expert's; with policy={self.policy} give it as "
                             "policy=scripted:noise=<rad>")  # fmt: skip
        if self.clean_labels and (not self.noise or self.policy != "scripted"):
            raise ValueError("clean_labels=true needs the expert with noise > 0 (policy=scripted noise=<rad>): "
                             "without noise the executed action is already the expert's")  # fmt: skip
        if not isinstance(self.after_success, int) or not 0 <= self.after_success <= 1000:
            raise ValueError(f"after_success={self.after_success!r} must be an integer in [0, 1000]")
        if self.after_success and self.worldmodel:
            raise ValueError("after_success= needs backend=mujoco (the labels are MuJoCo's success predicate)")

    def policies(self) -> list[str]:
        """Who acts, in attempt order (attempt j: the (j mod n)-th)."""
        return list(self.policy) if isinstance(self.policy, list | tuple) else [self.policy]

    def _check_audio(self) -> None:
        from genba.speech.instruction import NO_NOISE, parse_voices
        from genba.speech.noise import NOISE_KINDS

        self.voices = list(self.voices)
        if not self.audio:
            if self.voices or self.audio_noise != NO_NOISE:
                raise ValueError("voices= and audio_noise= need audio=true")
            return
        if self.sharded:  # the merge (distributed.py) does not carry meta/genba/audio yet
            raise ValueError("audio=true needs executor=local and shards=1")
        if self.audio_noise not in (NO_NOISE, *NOISE_KINDS):
            raise ValueError(f"audio_noise={self.audio_noise!r} is not one of {NO_NOISE}, {', '.join(NOISE_KINDS)}")
        if not isinstance(self.audio_snr, int | float) or not -30 <= self.audio_snr <= 60:
            raise ValueError(f"audio_snr={self.audio_snr!r} must be a number in [-30, 60] dB")
        parse_voices(self.voices, ("en", "ja") if self.lang == "mixed" else (self.lang,))  # fails before any work

    @property
    def sharded(self) -> bool:
        """Shards written by several processes (Ray tasks or local ones) and merged, not one writer."""
        return self.executor == "ray" or self.shards > 1

    def audio_job(self) -> dict | None:
        """What simulate_episode needs to speak the instruction (plain data: it crosses to worker processes)."""
        if not self.audio:
            return None
        return {"voices": list(self.voices), "noise": self.audio_noise, "snr": float(self.audio_snr)}

    def identity(self) -> dict[str, Any]:
        later = {k: getattr(self, k) for k, default in LATER_IDENTITY_FIELDS.items() if getattr(self, k) != default}
        return {k: getattr(self, k) for k in IDENTITY_FIELDS} | later

    def video(self) -> dict[str, Any] | None:
        """lerobot RGBEncoderConfig fields of the camera videos (None: lerobot's defaults)."""
        if self.vcodec == "av1" and not self.video_preset:
            return None
        preset = int(self.video_preset) if self.video_preset.isdigit() else self.video_preset or None
        quiet = {"x265-params": "log-level=error"} if self.vcodec == "hevc" else {}  # x265's own banner and report
        return {"vcodec": VCODECS[self.vcodec], "preset": preset, "extra_options": quiet}

    def env_overrides(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "cameras": list(self.cameras), "depth": self.depth, "lang": self.lang,
                "fps": self.fps} | ({"after_success": self.after_success} if self.after_success else {}) | (
                {"judge": self.judge} if self.judge != "head" else {})  # fmt: skip


def run_collect(cfg: CollectConfig) -> dict:
    from tqdm import tqdm

    from genba.datasets.writer import open_writer

    started = time.perf_counter()
    fps, env_state_dim = _probe_env(cfg)
    if cfg.sharded:
        from genba.datasets.distributed import run_distributed

        return run_distributed(cfg, fps, dataset_features(cfg, env_state_dim))
    try:
        writer = open_writer(cfg.out, fps, dataset_features(cfg, env_state_dim), cfg.identity(), video=cfg.video())
    except OSError as e:  # a folder that cannot be created or written (read-only file system, /proc, ...)
        raise GenbaError(
            f"cannot write the dataset at out={cfg.out}: {e.strerror or one_line(e)} ({e.filename})"
        ) from None
    resumed_from = writer.episodes
    max_attempts = cfg.episodes if cfg.keep_failed else 10 * cfg.episodes + 10
    new_frames = 0
    bar = tqdm(
        total=cfg.episodes,
        initial=min(writer.episodes, cfg.episodes),
        desc=f"collect {cfg.task}",
        unit="ep",
        file=sys.stderr,
    )
    results = _simulate(cfg, first=writer.attempts, stop=lambda: _done(cfg, writer, max_attempts))
    try:
        for result in results:
            kept = _keep(cfg, writer, result)
            new_frames += kept
            bar.update(1 if kept else 0)
            bar.set_postfix(success=f"{writer.successes}/{writer.attempts}")
    finally:
        results.close()  # stops the worker pool now, not whenever the generator is collected
        bar.close()
        writer.close()
    seconds = time.perf_counter() - started
    if writer.episodes < cfg.episodes:
        print(
            f"genba collect: warning: gave up after {writer.attempts} attempts with {writer.episodes} successful "
            f"episodes of {cfg.episodes} (keep_failed=false); the dataset is valid and can be extended",
            file=sys.stderr,
        )
    return {
        "episodes": writer.episodes,
        "frames": writer.frames,
        "expert_success_rate": round(writer.successes / writer.attempts, 4) if writer.attempts else None,
        "seconds": round(seconds, 3),
        "frames_per_s": round(new_frames / seconds, 2),
        "episodes_per_s": round((writer.episodes - resumed_from) / seconds, 3),
        "dataset": str(Path(cfg.out)),
        "new_episodes": writer.episodes - resumed_from,
        "new_frames": new_frames,
        "resumed_from_episode": resumed_from,
        "attempts": writer.attempts,
        "fps": fps,
        "workers": cfg.workers,
        "executor": "local",
        "config": asdict(cfg),
    }


def _keep(cfg: CollectConfig, writer: Any, result: dict) -> int:
    """Write (and commit) the attempt's episode when the dataset keeps it, else count the attempt; frames kept."""
    if result["success"] or cfg.keep_failed:
        frames, flac = result.pop("frames"), result.pop("audio_flac", None)
        writer.write_episode(frames, result[keys.TASK], result, audio=flac)
        return result["length"]
    writer.skip_attempt(success=False)
    return 0


def _done(cfg: CollectConfig, writer: Any, max_attempts: int) -> tuple[bool, int]:
    """(finished?, attempts still allowed) given what is committed."""
    left = cfg.episodes - writer.episodes
    return left <= 0 or writer.attempts >= max_attempts, min(left, max_attempts - writer.attempts)


def dataset_features(cfg: CollectConfig, env_state_dim: int) -> dict[str, dict]:
    """The LeRobot feature dict of a collect run (without lerobot's automatic index/timestamp features)."""
    s = cfg.image_size
    features: dict[str, dict] = {}
    for cam in cfg.cameras:
        features[keys.image_key(cam)] = {"dtype": "video", "shape": (s, s, 3), "names": ["height", "width", "channels"]}
    if cfg.depth:
        for cam in cfg.cameras:
            features[keys.depth_key(cam)] = {
                "dtype": "video",
                "shape": (s, s, 1),
                "names": ["height", "width", "channels"],
                "info": {"is_depth_map": True},
            }
    joints = list(keys.JOINTS)
    features[keys.OBS_STATE] = {"dtype": "float32", "shape": (len(joints),), "names": joints}
    slots = env_state_dim // len(SLOT_FIELDS)
    names = [f"slot{k}.{f}" for k in range(slots) for f in SLOT_FIELDS] if env_state_dim % 7 == 0 else None
    features[keys.OBS_ENV_STATE] = {"dtype": "float32", "shape": (env_state_dim,), "names": names}
    features[keys.ACTION] = {"dtype": "float32", "shape": (len(joints),), "names": joints}
    if cfg.after_success:  # LeRobot's per-frame label: the task holds after action t
        features[keys.NEXT_SUCCESS] = {"dtype": "bool", "shape": (1,), "names": None}
    return features


def _probe_env(cfg: CollectConfig) -> tuple[int, int]:
    """fps and environment-state size, from an env that renders nothing (cheap)."""
    from genba.sim import make

    if cfg.worldmodel:  # its one-line refusals (no success head, another task or fps, a camera it lacks) first
        from genba.worldmodel import make_env

        make_env(cfg.task, run=cfg.worldmodel, **cfg.env_overrides()).close()
    env = make(cfg.task, lang=cfg.lang, cameras=[], fps=cfg.fps)
    try:
        return int(env.unwrapped.fps), int(env.observation_space[keys.ENV_STATE].shape[0])
    finally:
        env.close()


def _simulate(cfg: CollectConfig, first: int, stop: Any, workers: int | None = None):
    """Yield episode results in attempt order (first, first+1, ...) until stop() says done.

    stop() -> (done, budget): checked before each submission; at most `budget` attempts are in flight, so no
    episode is simulated that cannot be kept (no wasted work when every attempt succeeds).
    """
    job = {"task": cfg.task, "env": cfg.env_overrides(), "noise": float(cfg.noise), "base_seed": cfg.seed,
           "samples": None if cfg.multisampling else 0, "audio": cfg.audio_job(),
           "worldmodel": cfg.worldmodel, "policies": cfg.policies(), "clean_labels": cfg.clean_labels}  # fmt: skip
    workers = workers or cfg.workers
    if workers == 1:
        attempt = first
        try:
            while not stop()[0]:
                yield simulate_episode({**job, "attempt": attempt})
                attempt += 1
        finally:
            close_envs()  # renderers hold GL contexts; a library caller may collect again with other options
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )
    pending: deque = deque()
    attempt = first
    try:
        while True:
            done, budget = stop()
            if done:
                return
            while len(pending) < min(budget, 2 * workers):
                pending.append(pool.submit(simulate_episode, {**job, "attempt": attempt}))
                attempt += 1
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """Pool workers hold both ends of their task queue, so a SIGKILLed parent never gives them EOF: they would wait
    forever. A daemon thread ends the worker once its parent is gone. Ctrl-C is the parent's to handle (it stops
    the pool and checkpoints); workers ignore it instead of each printing a traceback."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="genba-exit-with-parent").start()
