"""`genba eval`: a policy's success rate on a simulated task, through the one episode loop, with honest intervals.

    genba eval task=pick_place policy=scripted episodes=50
    genba eval task=reach policy=runs/vla-reach episodes=100 compare=lerobot:runs/act-reach   # paired, same seeds
    genba eval task=pick_place policy=runs/vla-pp episodes=100 grounding=true lang=mixed     # the grounding gap
    genba eval task=reach policy=my_lab.policies:Grasper episodes=100 workers=4 rrd=outputs/eval.rrd rrd_episodes=[0,3]
    genba eval task=reach policy=runs/vla-reach episodes=100 env=worldmodel worldmodel=runs/wm-reach   # imagination
    genba eval task=pick_place policy=runs/vla-both instruction_modality=audio voice=kokoro:jm_kumo \
        compare=runs/vla-both compare_modality=text audio_noise=factory audio_snr=10   # spoken (noisy) against typed

Seeds: episode i uses seed `seed + i`, and the summary records the whole list (`seeds`). The default first seed,
1,000,000, keeps evaluation away from `genba collect`'s training seeds (0 upwards).

The env: cameras, image size and depth default to what the policy's input spec reads, the instruction language to
the policy's own `lang` (the mix it was trained on, when it says) or English. `cameras=`, `image_size=` and
`lang=` override them (a configurable policy, such as `linear` or a class of yours whose constructor names them,
is built with the overrides too). An override the policy cannot take, such as dropping a camera it requires or an
image size other than the one its spec fixes, is a one-line error naming both sides, before any episode; so is a
policy that reads anything a genba env cannot give. A language the policy never saw is not an error: it runs, and
`by_language` shows how it did.

Episodes run in `workers` spawned processes (default: 2, or fewer when there are fewer episodes), each with
`threads` torch threads (0, the default: OMP_NUM_THREADS when set, else the cores divided among the workers; the
summary's `threads`, and each episode's `torch_threads` as torch ran it), its own policy (built by the same registry,
`genba.policies.registry.policy_factory`) and env, through the one episode loop (`genba.policies.rollout.rollout`).
Every episode starts from its seed alone (the scene, and the Python, NumPy and torch generators are seeded from it),
so the outcomes do not depend on the number of workers; a policy that keeps a generator of its own should reseed it
in `reset()`. An error in an episode stops the evaluation with one line naming the seed.

The backend: `env=mujoco` (the default) simulates; `env=worldmodel worldmodel=<run>` runs the same episodes in the
world model's env (genba.worldmodel.env: each episode starts from the MuJoCo reset of its seed, every step after is
imagined, and the run's success head ends it once its probability passes `success_threshold` for `success_steps`
consecutive steps; with `judge=sim`, the task's own predicate on the imagined joints does, for tasks whose success
reads only the arm (reach); all three are recorded in the summary), through the same loop and workers, with the same
report; `batch` episodes of a worker step together in one batched forward per step (genba.worldmodel.batched;
default: the worker's share, up to BATCH_CAP; each episode's `episode_seconds` is its share of the batch's wall
clock). A run without a success head (judge=head), trained on another task, or unable to give what the policy reads
is a one-line error before any episode. `backend`, `seconds` (the whole evaluation's wall clock) and
`seconds_per_episode` (mean wall clock of an episode, reset included) are reported for both, so their costs compare.

Summary: `success_rate`, `ci95` (Wilson's 95% score interval, [low, high]), `episodes`, `successes`, `seeds`,
`mean_length` (steps per episode), `latency_ms_p50` / `latency_ms_p99` (wall time of each `infer` call that produced
a chunk, in the worker), `by_language` ({lang: episodes, successes, success_rate, ci95}), `per_episode`, and:

- `compare=<policy>`: the other policy on the same seeds and scenes (its env follows its own input spec, in this
  run's language; its own summary under `compare`), `paired_diff` (this rate minus the other's), `paired_ci95`
  (Newcombe's paired interval), `p_value` (exact McNemar) and `discordant` (seeds only this policy solved,
  `first_only`, and only the other, `second_only`); see genba.policies.stats.
- `failed_requests`: `infer` calls that raised (the loop holds the arm and asks again); a warning line names the
  last error.
- `instruction=shuffled`: every instruction names another object of the same scene instead (a distractor, in the
  episode's language, with the task's template); success is still judged on the original object, so a policy
  that reads the instruction must fail more often. `shuffled_unchanged` counts episodes with no other object to
  name (their instruction stays).
- `grounding=true`: runs the policy both as it is and shuffled on the same seeds and reports `grounding_gap` (as-is
  rate minus shuffled rate), `grounding_ci95`, `grounding_p_value`, and the shuffled run under `shuffled`.
- `instruction_modality=text|audio|both` (default: the policy's own, text for a policy that reads `task`): how the
  instruction reaches the policy. `audio` speaks it (genba.speech) with `voice=` (engine:name[:speed[:pitch]]; empty:
  espeak:en-us for English, openjtalk:mei for Japanese) and passes it as `observation.audio` with its sample rate
  through the one loop, withholding the text; `both` passes both. `audio_noise=fan|motor|factory` mixes synthesized
  noise in at `audio_snr` dB. Shuffled instructions are spoken as shuffled. `compare_modality=` sets the compare
  run's (default: the same), so `compare=<the same run> compare_modality=text` is the paired spoken-against-typed
  comparison. The summary records `instruction_modality`, `voice`, `audio_noise` and `audio_snr` per run, and each
  episode's `voice` and `audio_seconds`. A policy that cannot take the modality, a voice that does not speak the
  language or a missing TTS engine is one line before any episode.
- `rrd=<file.rrd>`: the episodes at indices `rrd_episodes` (default the first) logged to Rerun through genba.viz,
  one recording each in the one file (what the env rendered, the state and actions, the instruction the policy was
  given, the scene in 3D; add `cameras=[front]` to see a policy that reads no camera); read it back with
  genba.viz.readback.read_rrd(path, recording=k). Several episodes are merged by the `rerun` CLI of rerun-sdk.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.policies.spoken_eval import MODALITIES
from genba.policies.stats import compare_paired, wilson_interval

__all__ = ["EVAL_SEED", "EvalConfig", "env_options", "run_eval", "wilson_interval"]

EVAL_SEED = 1_000_000  # far above the seeds collect uses by default (0, 1, ...)
INSTRUCTIONS = ("as_is", "shuffled")  # = genba.sim.scene.INSTRUCTION_MODES
DEFAULT_WORKERS = 2
BATCH_CAP = 64  # world-model episodes stepped together by default (memory grows with it; the gain flattens)
BACKENDS = ("mujoco", "worldmodel")


@dataclass
class EvalConfig:
    task: str = field(default="pick_place", metadata={"help": "simulated task (see `genba tasks`)"})
    policy: str = field(
        default="scripted",
        metadata={"help": "scripted | linear | hold | random, a VLA run folder, lerobot:<checkpoint folder>, or "
                          "module.path:ClassName"},
    )  # fmt: skip
    episodes: int = field(default=20, metadata={"help": "episodes to run (per policy)"})
    seed: int = field(default=EVAL_SEED, metadata={"help": "seed of the first episode; episode i uses seed + i"})
    n_action_steps: int | None = field(
        default=None, metadata={"help": "rows of each action chunk executed before the next; null: all of them"}
    )
    blend: int = field(default=0, metadata={"help": "steps over which an overlapping new chunk is blended in"})
    lang: str | None = field(
        default=None,
        metadata={"help": "instruction language: en, ja or mixed; null: the policy's own (its `lang`), else en"},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "camera image side in pixels; null: what the policy's input spec reads"}
    )
    cameras: list[str] | None = field(
        default=None, metadata={"help": "cameras to render (front, wrist); null: those the policy's input spec reads"}
    )
    randomize: bool = field(default=True, metadata={"help": "domain randomization of each episode's scene"})
    instruction: str = field(
        default="as_is",
        metadata={"help": "as_is, or shuffled: each instruction names another object of the scene (grounding)"},
    )
    compare: str = field(
        default="", metadata={"help": "another policy to run on the same seeds: paired difference, interval, p-value"}
    )
    grounding: bool = field(
        default=False, metadata={"help": "also run with shuffled instructions and report the grounding gap"}
    )
    workers: int | None = field(
        default=None, metadata={"help": f"parallel episode processes; null: min({DEFAULT_WORKERS}, episodes)"}
    )
    threads: int = field(default=0, metadata={"help": "torch threads per worker; 0: OMP_NUM_THREADS or cores/workers"})
    rrd: str = field(default="", metadata={"help": "write chosen episodes to this Rerun .rrd file (empty: none)"})
    rrd_episodes: list[int] = field(
        default_factory=lambda: [0], metadata={"help": "indices (0-based) of the episodes to write to rrd="}
    )
    instruction_modality: str | None = field(
        default=None, metadata={"help": "text, audio (spoken, voice=) or both; null: the policy's own, else text"}
    )
    compare_modality: str | None = field(
        default=None, metadata={"help": "the compare run's instruction modality; null: the same as this run's"}
    )
    voice: str = field(
        default="", metadata={"help": "TTS voice engine:name[:speed[:pitch]]; empty: espeak:en-us / openjtalk:mei"}
    )
    audio_noise: str = field(default="none", metadata={"help": "spoken: none, fan, motor or factory noise"})
    audio_snr: float = field(default=20.0, metadata={"help": "spoken: speech-to-noise ratio in dB"})
    env: str = field(default="mujoco", metadata={"help": "mujoco, or worldmodel: imagined episodes (worldmodel=)"})
    worldmodel: str = field(default="", metadata={"help": "world-model run folder for env=worldmodel"})
    judge: str = field(
        default="head", metadata={"help": "env=worldmodel: head (the run's success head) or sim (the task's predicate "
                                          "on the imagined joints; reach)"}
    )  # fmt: skip
    success_threshold: float = field(
        default=0.5, metadata={"help": "env=worldmodel: the success-head probability that counts as success"}
    )
    success_steps: int = field(
        default=1, metadata={"help": "env=worldmodel: consecutive steps above success_threshold that end an episode"}
    )
    batch: int | None = field(
        default=None, metadata={"help": f"env=worldmodel: episodes stepped together; null: a worker's share, up to "
                                         f"{BATCH_CAP}; 1: one at a time"},
    )  # fmt: skip
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/eval-<time>.json)"})

    def __post_init__(self) -> None:
        from genba.sim.config import CAMERA_NAMES, LANGS
        from genba.sim.tasks import TASKS  # the registry alone: no MuJoCo

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (valid: {', '.join(TASKS)})")
        if not isinstance(self.policy, str) or not self.policy.strip():
            raise ValueError("policy= is empty (valid: scripted, linear, hold, random, a run folder, ...)")
        if self.lang is not None and self.lang not in LANGS:
            raise ValueError(f"lang={self.lang!r} is not one of {', '.join(LANGS)}")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes={self.episodes!r} must be an integer >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"n_action_steps={self.n_action_steps!r} must be >= 1 (or null)")
        if self.blend < 0:
            raise ValueError(f"blend={self.blend!r} must be >= 0")
        if self.image_size is not None and (not isinstance(self.image_size, int) or not 16 <= self.image_size <= 1024):
            raise ValueError(f"image_size={self.image_size!r} must be an integer in [16, 1024] (or null)")
        if self.cameras is not None:
            self.cameras = list(self.cameras)
            if any(c not in CAMERA_NAMES for c in self.cameras) or len(set(self.cameras)) != len(self.cameras):
                raise ValueError(f"cameras={self.cameras!r}: each must be one of {', '.join(CAMERA_NAMES)}, no repeats")
        if self.instruction not in INSTRUCTIONS:
            raise ValueError(f"instruction={self.instruction!r} is not one of {', '.join(INSTRUCTIONS)}")
        if self.grounding and self.instruction != "as_is":
            raise ValueError("grounding=true runs both as_is and shuffled itself: leave instruction=as_is")
        for name in ("instruction_modality", "compare_modality"):
            if getattr(self, name) is not None and getattr(self, name) not in MODALITIES:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(MODALITIES)}")
        from genba.speech.noise import NOISE_KINDS

        if self.audio_noise not in ("none", *NOISE_KINDS):
            raise ValueError(f"audio_noise={self.audio_noise!r} is not one of none, {', '.join(NOISE_KINDS)}")
        if not isinstance(self.audio_snr, int | float) or not -30 <= self.audio_snr <= 60:
            raise ValueError(f"audio_snr={self.audio_snr!r} must be a number in [-30, 60] dB")
        if self.env not in BACKENDS:
            raise ValueError(f"env={self.env!r} is not one of {', '.join(BACKENDS)}")
        if (self.env == "worldmodel") != bool(self.worldmodel):
            raise ValueError("env=worldmodel needs worldmodel=<run folder>, and worldmodel= needs env=worldmodel")
        from genba.worldmodel.env import JUDGES

        if self.judge not in JUDGES:
            raise ValueError(f"judge={self.judge!r} is not one of {', '.join(JUDGES)}")
        judging = (self.judge, self.success_threshold, self.success_steps) != ("head", 0.5, 1)
        if self.env != "worldmodel" and (judging or self.batch):
            raise ValueError("judge=, success_threshold=, success_steps= and batch= are the world model's: they need "
                             "env=worldmodel")  # fmt: skip
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise ValueError(f"batch={self.batch!r} must be an integer >= 1 (or null)")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers={self.workers!r} must be an integer >= 1 (or null)")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads={self.threads!r} must be an integer >= 0 (0: the default)")
        if self.rrd and not self.rrd.endswith(".rrd"):
            raise ValueError(f"rrd={self.rrd!r} must be a .rrd file path (or empty)")
        self.rrd_episodes = sorted({int(i) for i in self.rrd_episodes})
        bad = [i for i in self.rrd_episodes if not 0 <= i < self.episodes]
        if self.rrd and (bad or not self.rrd_episodes):
            raise ValueError(
                f"rrd_episodes={self.rrd_episodes}: each must be an episode index in 0..{self.episodes - 1}"
            )

    @property
    def n_workers(self) -> int:
        return min(self.workers or DEFAULT_WORKERS, self.episodes)

    @property
    def n_batch(self) -> int:
        """Episodes per job: 1 in MuJoCo; in the world model `batch`, or each worker's share of the episodes."""
        share = -(-self.episodes // self.n_workers)
        return 1 if self.env != "worldmodel" else min(self.batch or min(share, BATCH_CAP), self.episodes)


def env_options(policy: Any) -> dict[str, Any]:
    """The cameras, image size and depth a policy's input spec asks for (no cameras: nothing is rendered); a one-line
    GenbaError naming both sides when it reads anything a genba env cannot give (checked before any episode)."""
    from genba.sim.arm import PROVIDES, provides

    prefix, depth_prefix = keys.OBS_IMAGES + ".", keys.OBS_DEPTH + "."
    for key, feat in policy.input_spec.features.items():
        if feat.required and not provides(key, feat.dtype, feat.shape):
            from genba.policies.contract import policy_name

            dims = "x".join(str(n) for n in feat.shape)
            raise GenbaError(
                f"{policy_name(policy)} reads {key} {feat.dtype}" + (f"[{dims}]" if dims else "")
                + f"; a genba env gives {PROVIDES}"
            )  # fmt: skip
    images = {
        k: f.shape
        for k, f in policy.input_spec.features.items()
        if k.startswith((prefix, depth_prefix))
        and provides(k, f.dtype, f.shape)  # an optional camera it lacks: not given
    }
    cams = list(dict.fromkeys(k.split(".", 2)[2] for k in images))
    sizes = {shape[:2] for shape in images.values()}
    if len(sizes) > 1 or any(h != w for h, w in sizes):
        raise GenbaError(
            f"the policy asks for images of shapes {sorted(sizes)}; genba's cameras render one square size"
        )
    depth = any(k.startswith(depth_prefix) for k in images)
    return {"cameras": cams, **({"image_size": sizes.pop()[0]} if sizes else {}), **({"depth": True} if depth else {})}


def resolve_env(policy: Any, cfg: EvalConfig) -> dict[str, Any]:
    """The `genba.sim.make` options for `policy` under cfg's overrides; a one-line GenbaError, naming what the
    policy reads and what the override gives, when they do not fit."""
    from genba.policies.contract import policy_name
    from genba.sim.config import LANGS

    wants = env_options(policy)
    name = policy_name(policy)
    options: dict[str, Any] = {"cameras": wants["cameras"], "randomize": cfg.randomize}
    if cfg.cameras is not None:
        for key, feat in policy.input_spec.features.items():
            camera = key.split(".", 2)[2] if key.startswith((keys.OBS_IMAGES + ".", keys.OBS_DEPTH + ".")) else None
            if camera is not None and feat.required and camera not in cfg.cameras:
                raise GenbaError(f"{name} requires {key}; cameras={cfg.cameras} does not render {camera}")
        options["cameras"] = list(cfg.cameras)
    size = wants.get("image_size")
    if cfg.image_size is not None and size is not None and cfg.image_size != size:
        raise GenbaError(f"{name} reads {size}x{size} images (its input spec is fixed); image_size={cfg.image_size} "
                         f"would render {cfg.image_size}x{cfg.image_size}")  # fmt: skip
    if cfg.image_size is not None or size is not None:
        options["image_size"] = cfg.image_size or size
    if wants.get("depth"):
        options["depth"] = True
    own = getattr(policy, "lang", None)
    options["lang"] = cfg.lang or (own if own in LANGS else "en")
    return options


def run_eval(cfg: EvalConfig) -> dict:
    import time

    from genba.policies.eval_worker import run_all, worker_threads
    from genba.policies.registry import policy_factory
    from genba.policies.spoken_eval import check_speech, instruction_modality

    started = time.perf_counter()
    threads = worker_threads(cfg.threads, cfg.n_workers)  # a bad OMP_NUM_THREADS: one line before any work
    factory = {"task": cfg.task, "seed": cfg.seed, "image_size": cfg.image_size, "cameras": cfg.cameras}
    built = {cfg.policy: policy_factory(cfg.policy, **factory)()}  # fail on a bad name before any episode
    if cfg.compare and cfg.compare not in built:
        built[cfg.compare] = policy_factory(cfg.compare, **factory)()
    env = {name: resolve_env(p, cfg) for name, p in built.items()}
    lang = env[cfg.policy]["lang"]
    for options in env.values():  # paired runs share the scenes: the same seeds in the same language
        options["lang"] = lang
    modality = {p: instruction_modality(built[p], cfg) for p in built}
    other = instruction_modality(built[cfg.compare], cfg, cfg.compare_modality) if cfg.compare else ""
    runs = [(cfg.policy, cfg.instruction, modality[cfg.policy])]
    runs += [(cfg.compare, cfg.instruction, other)] if cfg.compare else []
    runs += [(cfg.policy, "shuffled", modality[cfg.policy])] if cfg.grounding else []
    speech = check_speech(cfg, lang) if any(m != "text" for *_, m in runs) else None
    if cfg.env == "worldmodel":  # its one-line refusals (no success head, another task, ...) before any episode
        from genba.worldmodel.env import check_options

        for options in env.values():  # from the run's config: the weights load in the workers
            check_options(cfg.task, cfg.worldmodel, **options, **_judge(cfg))
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    rrd = _check_rrd(cfg)
    scratch = tempfile.mkdtemp(prefix=".eval-rrd-", dir=rrd.parent) if rrd else ""
    setup = {
        "task": cfg.task,
        "runs": [_run_setup(built, p, mode, m, env[p], factory) for p, mode, m in runs],
        "speech": speech,
        "n_action_steps": cfg.n_action_steps,
        "blend": cfg.blend,
        "rrd_episodes": cfg.rrd_episodes if rrd else [],
        "rrd_dir": scratch,
        "threads": threads,
        "backend": cfg.env,
        "worldmodel": cfg.worldmodel,
        "judge": _judge(cfg),
    }
    try:
        results = run_all(cfg.n_workers, cfg.n_batch, cfg.task, setup, seeds, built)
        rrd_written = _merge_rrd([results[0][i]["rrd_part"] for i in cfg.rrd_episodes], rrd) if rrd else None
    finally:
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    summary = _summary(cfg, setup, seeds, results, rrd_written)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _run_setup(built: dict, policy: str, mode: str, modality: str, env: dict, factory: dict) -> dict:
    from genba.policies.contract import policy_name

    return {"policy": policy, "name": policy_name(built[policy]), "instruction": mode, "modality": modality,
            "env": env, "factory": factory}  # fmt: skip


def _judge(cfg: EvalConfig) -> dict:
    """How the world-model env decides success (genba.worldmodel.env.WorldModelEnvConfig); {} in MuJoCo."""
    if not cfg.worldmodel:
        return {}
    return {"judge": cfg.judge, "success_threshold": cfg.success_threshold, "success_steps": cfg.success_steps}


def _check_rrd(cfg: EvalConfig) -> Path | None:
    """The .rrd target, checked before any episode; several episodes are merged by the `rerun` CLI."""
    if not cfg.rrd:
        return None
    from genba.io import check_path, check_writable

    path = check_writable(check_path(Path(cfg.rrd).expanduser(), "rrd"), "rrd")
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(cfg.rrd_episodes) > 1:
        _rerun_cli()
    return path


def _rerun_cli() -> str:
    import shutil

    found = shutil.which("rerun") or shutil.which("rerun", path=str(Path(sys.executable).parent))
    if not found:
        raise GenbaError("rrd_episodes names several episodes, which the `rerun` CLI (rerun-sdk) merges into one "
                         "file, but it is not on PATH; name one episode")  # fmt: skip
    return found


def _merge_rrd(parts: list[str], out: Path) -> str:
    """The episodes' recordings in one .rrd at `out` (moved there when one; `rerun rrd merge` when several)."""
    import subprocess

    from genba.io import one_line

    if len(parts) == 1:
        os.replace(parts[0], out)
        return str(out)
    tmp = Path(parts[0]).with_name("merged.rrd")
    with open(tmp, "wb") as f:
        done = subprocess.run([_rerun_cli(), "rrd", "merge", *parts], stdout=f, stderr=subprocess.PIPE, timeout=600)
    if done.returncode != 0:
        raise GenbaError(f"rerun rrd merge failed: {one_line(done.stderr.decode(errors='replace')[-300:])}")
    os.replace(tmp, out)
    return str(out)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 3)


def _rate(episodes: list[dict]) -> dict:
    n, wins = len(episodes), sum(bool(e["success"]) for e in episodes)
    low, high = wilson_interval(wins, n)
    return {"episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0,
            "ci95": [round(low, 4), round(high, 4)]}  # fmt: skip


def _run_summary(run: dict, episodes: list[dict]) -> dict:
    latency = [ms for e in episodes for ms in e["latency_ms"]]
    langs = sorted({e["lang"] for e in episodes})
    out = {
        "policy": run["name"],
        "instruction": run["instruction"],
        "instruction_modality": run["modality"],
        **(run["heard"] if run["modality"] != "text" else {}),
        **_rate(episodes),
        "mean_length": sum(e["steps"] for e in episodes) / len(episodes),
        "latency_ms_p50": _percentile(latency, 50),
        "latency_ms_p99": _percentile(latency, 99),
        "chunks": len(latency),
        "failed_requests": sum(e["errors"] for e in episodes),
        "by_language": {lang: _rate([e for e in episodes if e["lang"] == lang]) for lang in langs},
    }
    if run["instruction"] == "shuffled":
        out["shuffled_unchanged"] = sum(e["instruction_names"] is None for e in episodes)
    drop = ("latency_ms", "rrd_part")
    out["per_episode"] = [{k: v for k, v in e.items() if k not in drop} for e in episodes]
    return out


def _summary(cfg: EvalConfig, setup: dict, seeds: list[int], results: list, rrd: str | None) -> dict:
    speech = setup["speech"] or {"voices": [], "noise": "none"}
    heard = {"voice": ", ".join(speech["voices"]), "audio_noise": speech["noise"],
             "audio_snr": speech["snr"] if speech["noise"] != "none" else None}  # fmt: skip
    runs = [_run_summary({**run, "heard": heard}, eps) for run, eps in zip(setup["runs"], results, strict=True)]
    main = runs[0]
    summary: dict[str, Any] = {"task": cfg.task, **{k: v for k, v in main.items() if k != "per_episode"}}
    summary["seeds"] = seeds
    summary["env"] = setup["runs"][0]["env"]
    summary["workers"], summary["threads"] = cfg.n_workers, setup["threads"]
    summary["backend"] = cfg.env
    if cfg.env == "worldmodel":
        summary["worldmodel"] = cfg.worldmodel
        summary.update(_judge(cfg), batch=cfg.n_batch)
    summary["seconds_per_episode"] = round(sum(e["episode_seconds"] for e in results[0]) / len(seeds), 4)
    outcomes = [[e["success"] for e in episodes] for episodes in results]
    where = f" in the world model {cfg.worldmodel}" if cfg.env == "worldmodel" else ""
    lines = [f"{main['policy']} on {cfg.task}{where}: {_rate_line(main)}, seeds {seeds[0]}..{seeds[-1]}"]
    if cfg.compare:
        other = runs[1]
        paired = compare_paired(outcomes[0], outcomes[1])
        summary["compare"] = other
        summary["paired_diff"] = paired["diff"]
        summary["paired_ci95"] = paired["ci95"]
        summary["p_value"] = paired["p_value"]
        summary["discordant"] = {"first_only": paired["first_only"], "second_only": paired["second_only"]}
        lines.append(f"{other['policy']}: {_rate_line(other)}; paired difference {_paired_line(paired)}")
    if cfg.grounding:
        shuffled = runs[-1]
        paired = compare_paired(outcomes[0], outcomes[-1])
        summary["shuffled"] = shuffled
        summary["grounding_gap"] = paired["diff"]
        summary["grounding_ci95"] = paired["ci95"]
        summary["grounding_p_value"] = paired["p_value"]
        lines.append(f"shuffled instructions: {_rate_line(shuffled)}; grounding gap {_paired_line(paired)}")
    if rrd:
        summary["rrd"] = rrd
        summary["rrd_seeds"] = [seeds[i] for i in cfg.rrd_episodes]
    summary["per_episode"] = main["per_episode"]
    summary["config"] = asdict(cfg)
    for run in runs:
        if run["failed_requests"]:
            last = next(e["last_error"] for e in reversed(run["per_episode"]) if e["errors"])
            lines.append(f"warning: {run['failed_requests']} requests to {run['policy']} failed (the loop held the "
                         f"arm and asked again); the last: {last}")  # fmt: skip
    for line in lines:
        print(line, file=sys.stderr)
    return summary


def _rate_line(run: dict) -> str:
    low, high = run["ci95"]
    latency = f", {run['latency_ms_p50']:.1f} ms per chunk (p50)" if run["latency_ms_p50"] is not None else ""
    return f"{run['successes']}/{run['episodes']} = {run['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}){latency}"


def _paired_line(paired: dict) -> str:
    low, high = paired["ci95"]
    return f"{paired['diff']:+.1%} (95% CI {low:+.1%} to {high:+.1%}), McNemar p = {paired['p_value']:.3g}"
