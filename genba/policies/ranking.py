"""`genba eval-ranking`: does the world model rank policies as MuJoCo does? Each policy is evaluated in both, on the
same seeds, through `genba eval`'s own evaluator (genba.policies.evaluate.run_eval: the same loop, workers, scenes
and report), and the two success rates are compared across policies.

    genba eval-ranking task=reach worldmodel=runs/wm-reach episodes=50 out=outputs/ranking.json \\
        "policies=[scripted,'scripted:noise=0.1','scripted:noise=0.2','scripted:noise=0.3',hold,random,runs/vla]"
    genba eval-ranking ... rrd=outputs/side_by_side.rrd          # the first policy's first seed, real and imagined

Policies are any names the registry takes (genba.policies.registry): VLA run folders, `lerobot:<folder>`,
`module.path:ClassName`, the built-ins, and built-ins with options such as `scripted:noise=0.3` (the scripted expert
with action noise: a cheap way to span success rates; in a Hydra list, quote it: the grammar takes no bare `=`).
Policy i is evaluated on seeds `seed .. seed + episodes - 1` in MuJoCo (`env=mujoco`) and in the world model
(`env=worldmodel worldmodel=<run>`), each episode of the world model starting from the MuJoCo reset of its seed.

Summary: `pearson_r`, `spearman_r` (None when either backend gives every policy the same rate), `mmrv` (SIMPLER's
mean maximum rank violation of the world model's rates against MuJoCo's; genba.policies.stats), `checkpoints` (per
policy: `policy`, `mujoco` and `worldmodel`, each with `success_rate`, `ci95` (Wilson), `successes`, `episodes`,
`mean_length`, `seconds`, `seconds_per_episode`, `outcomes` (per seed, 1 = success), and `agreement`: the share of
seeds whose outcome the world model got right), `seconds_mujoco` and `seconds_worldmodel` (the evaluations' wall
clock, summed over policies), `batch` (imagined episodes stepped together, `genba eval`'s batch=), `threads` (torch
threads per worker process, `genba eval`'s threads=), `seeds`, and with rrd=, `rrd`: one Rerun recording of the
same start in both backends, side by side (each camera as `<camera>` and `<camera> (imagined)`, the joints as
`<joint>` and `imagined <joint>`; the shorter episode holds its last frame), written by genba.viz.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.policies.eval_worker import kept_pool
from genba.policies.evaluate import EVAL_SEED, EvalConfig, run_eval
from genba.policies.stats import mmrv, pearson_r, spearman_r

__all__ = ["RankingConfig", "run_ranking", "side_by_side"]

BACKENDS = ("mujoco", "worldmodel")  # the reference first
ISSUE_POLICIES, ISSUE_EPISODES = 8, 50  # what issue 12 asks of a ranking


@dataclass
class RankingConfig:
    task: str = field(default="reach", metadata={"help": "simulated task (see `genba tasks`)"})
    worldmodel: str = field(default="", metadata={"help": "world-model run folder with a success head (required)"})
    policies: list[str] = field(
        default_factory=list,
        metadata={"help": "at least 2 policy names the registry takes: run folders, lerobot:<dir>, module:Class, "
                          "scripted, scripted:noise=0.3, hold, random, linear"},
    )  # fmt: skip
    episodes: int = field(default=50, metadata={"help": "episodes per policy and backend (the same seeds)"})
    seed: int = field(default=EVAL_SEED, metadata={"help": "seed of the first episode; episode i uses seed + i"})
    cameras: list[str] | None = field(
        default=None, metadata={"help": "cameras to render in both backends; null: what each policy reads"}
    )
    image_size: int | None = field(default=None, metadata={"help": "camera image side; null: the policy's"})
    lang: str | None = field(default=None, metadata={"help": "instruction language; null: the policy's own, else en"})
    workers: int | None = field(default=None, metadata={"help": "episode processes per evaluation (as genba eval)"})
    threads: int = field(
        default=0, metadata={"help": "torch threads per worker (as genba eval): 0: OMP_NUM_THREADS or cores/workers"}
    )
    rrd: str = field(
        default="", metadata={"help": "write the first seed of rrd_policy in both backends, side by side (.rrd)"}
    )
    rrd_policy: str = field(default="", metadata={"help": "policy for rrd= (empty: the first of policies)"})
    judge: str = field(
        default="head", metadata={"help": "head: the world model's success head; sim: the task's predicate on the "
                                          "imagined joints (reach)"}
    )  # fmt: skip
    success_threshold: float = field(default=0.5, metadata={"help": "the world model's success-head probability"})
    success_steps: int = field(default=1, metadata={"help": "consecutive steps above it that end an imagined episode"})
    batch: int | None = field(
        default=None, metadata={"help": "imagined episodes stepped together (as genba eval's batch=); null: auto"}
    )
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/eval-ranking-<time>.json)"})

    def __post_init__(self) -> None:
        if not self.worldmodel:
            raise ValueError("worldmodel= is required: a world-model run folder (with a success head for judge=head)")
        self.policies = [str(p) for p in self.policies]
        if len(self.policies) < 2:
            raise ValueError(f"policies={self.policies}: a ranking needs at least 2 policies")
        repeated = sorted({p for p in self.policies if self.policies.count(p) > 1})
        if repeated:
            raise ValueError(f"policies= names {repeated[0]!r} more than once")
        if self.rrd_policy and self.rrd_policy not in self.policies:
            raise ValueError(f"rrd_policy={self.rrd_policy!r} is not one of policies=")
        self.eval_config("worldmodel", self.policies[0])  # EvalConfig's own checks (task, episodes, seed, rrd, ...)

    def eval_config(self, backend: str, policy: str) -> EvalConfig:
        """The `genba eval` configuration of one policy in one backend."""
        wm = self.worldmodel if backend == "worldmodel" else ""
        judge = {"judge": self.judge, "success_threshold": self.success_threshold, "success_steps": self.success_steps,
                 "batch": self.batch} if wm else {}  # fmt: skip
        return EvalConfig(task=self.task, policy=policy, episodes=self.episodes, seed=self.seed, lang=self.lang,
                          image_size=self.image_size, cameras=self.cameras, workers=self.workers, threads=self.threads,
                          env=backend, worldmodel=wm, **judge)  # fmt: skip


def run_ranking(cfg: RankingConfig) -> dict:
    from genba.policies.contract import policy_name
    from genba.policies.registry import policy_factory

    rrd = _check_rrd(cfg.rrd)
    factory = {"task": cfg.task, "seed": cfg.seed, "image_size": cfg.image_size, "cameras": cfg.cameras}
    names = {p: policy_name(policy_factory(p, **factory)()) for p in cfg.policies}  # every name fails before work
    checkpoints, seconds, batch, threads = [], dict.fromkeys(BACKENDS, 0.0), None, None
    with kept_pool():  # the workers are spawned once, by the first policy's world-model evaluation
        for i, policy in enumerate(cfg.policies):
            print(f"eval-ranking: policy {i + 1}/{len(cfg.policies)}: {policy}", file=sys.stderr)
            runs = {}
            for backend in reversed(BACKENDS):  # the world model first: its refusals come before any MuJoCo episode
                summary = run_eval(cfg.eval_config(backend, policy))
                runs[backend] = _backend(summary)
                seconds[backend] += summary["seconds"]
                batch, threads = summary.get("batch", batch), summary["threads"]
            same = [a == b for a, b in zip(runs["mujoco"]["outcomes"], runs["worldmodel"]["outcomes"], strict=True)]
            checkpoints.append({"policy": policy, "name": names[policy], **{b: runs[b] for b in BACKENDS},
                                "agreement": round(sum(same) / len(same), 4)})  # fmt: skip
    real = [c["mujoco"]["success_rate"] for c in checkpoints]
    imagined = [c["worldmodel"]["success_rate"] for c in checkpoints]
    summary: dict[str, Any] = {
        "task": cfg.task,
        "worldmodel": cfg.worldmodel,
        "policies": len(checkpoints),
        "episodes": cfg.episodes,
        "pearson_r": _round(pearson_r(real, imagined)),
        "spearman_r": _round(spearman_r(real, imagined)),
        "mmrv": round(mmrv(real, imagined), 4),
        "seconds_mujoco": round(seconds["mujoco"], 3),
        "seconds_worldmodel": round(seconds["worldmodel"], 3),
        "batch": batch,
        "threads": threads,
        "checkpoints": checkpoints,
        "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1],
    }
    if rrd:
        summary["rrd"] = side_by_side(cfg, cfg.rrd_policy or cfg.policies[0], cfg.seed, rrd)
    summary["config"] = asdict(cfg)
    _report(summary)
    return summary


def _backend(summary: dict) -> dict:
    """What the ranking keeps of one `genba eval` summary."""
    kept = ("success_rate", "ci95", "successes", "episodes", "mean_length", "seconds", "seconds_per_episode")
    return {**{k: summary[k] for k in kept}, "outcomes": [int(bool(e["success"])) for e in summary["per_episode"]]}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _report(summary: dict) -> None:
    width = max(len(c["policy"]) for c in summary["checkpoints"])
    lines = [f"{'policy':<{width}}  MuJoCo                  world model             agreement"]
    for c in summary["checkpoints"]:
        cells = [f"{c[b]['successes']:>3}/{c[b]['episodes']:<3} {c[b]['success_rate']:6.1%} "
                 f"[{c[b]['ci95'][0]:.2f}, {c[b]['ci95'][1]:.2f}]" for b in BACKENDS]  # fmt: skip
        lines.append(f"{c['policy']:<{width}}  {cells[0]}  {cells[1]}  {c['agreement']:.0%}")

    def show(value: float | None) -> str:
        return "undefined (a constant side)" if value is None else f"{value:+.3f}"

    lines.append(f"Pearson r {show(summary['pearson_r'])}, Spearman r {show(summary['spearman_r'])}, MMRV "
                 f"{summary['mmrv']:.3f}; wall clock MuJoCo {summary['seconds_mujoco']:.1f} s, world model "
                 f"{summary['seconds_worldmodel']:.1f} s")  # fmt: skip
    if summary["policies"] < ISSUE_POLICIES or summary["episodes"] < ISSUE_EPISODES:
        lines.append(f"note: {summary['policies']} policies x {summary['episodes']} episodes; issue 12's ranking "
                     f"asks for at least {ISSUE_POLICIES} x {ISSUE_EPISODES}")  # fmt: skip
    for line in lines:
        print(line, file=sys.stderr)


def _check_rrd(rrd: str) -> Path | None:
    if not rrd:
        return None
    if not rrd.endswith(".rrd"):
        raise GenbaError(f"rrd={rrd!r} must be a .rrd file path (or empty)")
    from genba.io import check_path, check_writable

    return check_writable(check_path(Path(rrd).expanduser(), "rrd"), "rrd")


def side_by_side(cfg: RankingConfig, policy: str, seed: int, out: Path) -> dict:
    """`policy` from the MuJoCo reset of `seed`, run in MuJoCo and in the world model (the one loop, seeded as
    `genba eval` seeds an episode), logged to `out` as one Rerun recording; returns what was written."""
    from genba.policies.evaluate import resolve_env
    from genba.policies.registry import policy_factory
    from genba.policies.rollout import rollout, seed_everything
    from genba.sim import make
    from genba.viz.episode import VizConfig, write_recording
    from genba.worldmodel import make_env
    from genba.worldmodel.env import load_worldmodel

    made = policy_factory(policy, task=cfg.task, seed=cfg.seed, image_size=cfg.image_size, cameras=cfg.cameras)
    options = resolve_env(made(), cfg.eval_config("mujoco", policy))
    _, mcfg, _ = load_worldmodel(cfg.worldmodel)
    options["cameras"] = options["cameras"] or list(mcfg.cameras)  # something to see, even for a blind policy
    options.setdefault("image_size", mcfg.image_size)
    episodes = {}
    for backend in BACKENDS:
        env = make(cfg.task, **options) if backend == "mujoco" else make_env(cfg.task, run=cfg.worldmodel, **options)
        try:
            seed_everything(seed)
            episodes[backend] = (rollout(env, made(), seed, record=True), env.unwrapped.episode_spec())
            fps = float(env.unwrapped.fps)
        finally:
            env.close()
    (real, spec), (dream, _) = episodes["mujoco"], episodes["worldmodel"]
    ep = _combined(real, dream, spec, fps=fps)
    told = {b: f"{'success' if e.success else 'failure'} in {e.steps} steps" for b, (e, _) in episodes.items()}
    ep.source = (f"{policy} seed {seed}: MuJoCo {told['mujoco']}, world model {Path(cfg.worldmodel).name} "
                 f"{told['worldmodel']} (imagined: the '(imagined)' cameras and 'imagined' joints)")  # fmt: skip
    written = write_recording(ep, out, VizConfig(scene=False, pointcloud=False))  # the scene replays 6 joints
    outcome = {b: {"success": e.success, "steps": e.steps} for b, (e, _) in episodes.items()}
    return {"path": written["rrd"], "policy": policy, "seed": seed, **outcome}


def _combined(real: Any, dream: Any, spec: dict, fps: float) -> Any:
    """One genba.viz Episode of two recorded episodes from the same start: cameras and joints of both, the shorter
    holding its last frame; the real one's object poses and instruction (no 3D scene: its replay reads 6 joints)."""
    import numpy as np

    from genba.viz.data import episode_from_steps

    n = max(real.steps, dream.steps)

    def held(array: np.ndarray) -> np.ndarray:  # (T, ...) -> (n, ...), the last row repeated
        return np.concatenate([array, np.repeat(array[-1:], n - len(array), axis=0)])

    cams = [c for c in keys.CAMERAS if keys.image_key(c) in real.frames]
    state = np.concatenate([held(real.frames[keys.OBS_STATE]), held(dream.frames[keys.OBS_STATE])], axis=1)
    actions = np.concatenate([held(real.frames[keys.ACTION]), held(dream.frames[keys.ACTION])], axis=1)
    env_state = held(real.frames[keys.OBS_ENV_STATE])
    pixels = {c: held(real.frames[keys.image_key(c)]) for c in cams}
    pixels |= {f"{c} (imagined)": held(dream.frames[keys.image_key(c)]) for c in cams}
    observations = [{keys.PIXELS: {c: v[t] for c, v in pixels.items()}, keys.AGENT_POS: state[t],
                     keys.ENV_STATE: env_state[t]} for t in range(n)]  # fmt: skip
    names = list(keys.JOINTS) + [f"imagined {j}" for j in keys.JOINTS]
    meta = {"spec": spec, "success": real.success, "seed": real.seed, "imagined_success": dream.success,
            "steps": real.steps, "imagined_steps": dream.steps}  # fmt: skip
    return episode_from_steps(observations, actions, fps=fps, instruction=real.task, meta=meta, state_names=names)
