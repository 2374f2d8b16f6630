"""`genba bench collect`: collection frames/s for local workers and Ray, per render and codec option, and the
per-frame costs of the scaling model in benchmarks/README.md.

    genba bench collect task=pick_place episodes=6 points=[local:1,local:2,local:2:2,ray:2] repeats=3

Each point `executor:workers[:shards]` runs `genba collect` (run_collect, the real thing: MuJoCo, the expert,
lerobot's writer; when sharded, the shards and lerobot's merge) into a fresh folder, `repeats` times; shards default
to collect's (1 for local: one writer; workers for ray), so `local:2:2` is two local processes that each simulate and
write a shard. The summary quotes the median frames/s and episodes/s per point and option, and each point's ratio to
local:1 in the same run. Ray is started once (a local instance with the largest Ray worker count, loopback) and its
start-up is not timed; a sharded run's time does include its task start-up, shard writing and merge (`merge_share`:
merge seconds over collect seconds). Ray keeps its worker processes between runs, and so does the bench with local
shard processes (genba.datasets.shards.keep_processes): in both, the first run of the first option pays the
workers' start-up (importing lerobot, torch and MuJoCo) and later runs do not; `frames_per_s_runs` lists every run.

The model's costs are measured apart on the same episodes in this process: `sim_render_ms` per frame (physics, the
expert and the cameras, no writing) and `write_ms` per frame (lerobot's writer with its video encoding, from frames
already in memory); and, per codec, the decode cost of training on that dataset, per dataset frame (every camera)
through genba's clip loader's decoder (torchcodec in lerobot's seek mode): `decode_in_order_ms` decoding every frame
in order (what building genba's frame cache costs, once per dataset) and `decode_random_ms` decoding single frames
at random rows (what a loader without a frame cache pays per sample, like lerobot's LeRobotDataset or cache=off).
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from genba.datasets.collect import VCODECS, CollectConfig
from genba.datasets.shards import keep_processes


@dataclass
class BenchCollectConfig:
    task: str = field(default="pick_place", metadata={"help": "task to collect"})
    episodes: int = field(default=6, metadata={"help": "episodes per collect run"})
    image_size: int = field(default=128, metadata={"help": "camera image size"})
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"], metadata={"help": "cameras"})
    fps: int = field(default=10, metadata={"help": "control rate"})
    points: list[str] = field(
        default_factory=lambda: ["local:1", "local:2", "local:2:2", "ray:2"],
        metadata={"help": "executor:workers[:shards] to time (shards: 1 local, workers ray by default)"},
    )
    multisampling: list[bool] = field(default_factory=lambda: [True, False], metadata={"help": "render options"})
    vcodec: list[str] = field(default_factory=lambda: ["av1"], metadata={"help": "codecs (av1, h264, hevc)"})
    video_preset: str = field(default="", metadata={"help": "encoder preset for every codec ('' = lerobot's)"})
    repeats: int = field(default=3, metadata={"help": "runs per point (the median is reported)"})
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/bench-collect-<time>.json)"})

    def __post_init__(self) -> None:
        for p in self.points:
            executor, *numbers = p.split(":")
            ok = executor in ("local", "ray") and 1 <= len(numbers) <= 2
            if not ok or not all(n.isdigit() and int(n) >= 1 for n in numbers):
                raise ValueError(f"points: {p!r} is not executor:workers[:shards] (local:1, local:2:2, ray:2, ...)")
        bad = [c for c in self.vcodec if c not in VCODECS]
        if bad:
            raise ValueError(f"vcodec: {bad[0]!r} is not one of {', '.join(VCODECS)}")
        if self.repeats < 1 or self.episodes < 1:
            raise ValueError("repeats and episodes must be >= 1")


def run_bench_collect(cfg: BenchCollectConfig) -> dict:
    import os

    from tqdm import tqdm

    ray_workers = max([int(p.split(":")[1]) for p in cfg.points if p.startswith("ray:")], default=0)
    ray = None
    if ray_workers:
        import ray

        if ray.is_initialized():  # the caller's instance: used as it is, and left running
            ray = None
        else:
            ray.init(num_cpus=ray_workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    kept = contextlib.ExitStack()  # local shard processes, kept across runs like Ray's workers
    for workers in sorted({int(p.split(":")[1]) for p in cfg.points if p.startswith("local:") and p.count(":") == 2}):
        kept.enter_context(keep_processes(workers))
    scratch = Path(tempfile.mkdtemp(prefix="genba-bench-collect-"))
    results: list[dict] = []
    costs: dict[str, dict] = {}
    options = [(ms, vc) for ms in cfg.multisampling for vc in cfg.vcodec]
    bar = tqdm(total=len(options) * (len(cfg.points) * cfg.repeats + 1), desc="bench collect", unit="run")
    try:
        for ms, vc in options:
            base = {"task": cfg.task, "episodes": cfg.episodes, "image_size": cfg.image_size,
                    "cameras": list(cfg.cameras), "fps": cfg.fps, "multisampling": ms, "vcodec": vc,
                    "video_preset": cfg.video_preset}  # fmt: skip
            costs[f"multisampling={ms} vcodec={vc}"] = _costs(CollectConfig(**base, out=str(scratch / "costs")))
            bar.update()
            for point in cfg.points:
                executor, workers, *shards = point.split(":")
                runs = []
                for r in range(cfg.repeats):
                    out = scratch / f"{point.replace(':', '-')}-{r}"
                    summary = _run(CollectConfig(**base, out=str(out), executor=executor, workers=int(workers),
                                                 shards=int(shards[0]) if shards else 0))  # fmt: skip
                    runs.append(summary)
                    shutil.rmtree(out, ignore_errors=True)
                    bar.update()
                fps_runs = [s["frames"] / s["seconds"] for s in runs]
                row = {
                    "point": point, "multisampling": ms, "vcodec": vc,
                    "frames_per_s": round(statistics.median(fps_runs), 1),
                    "frames_per_s_runs": [round(f, 1) for f in fps_runs],
                    "episodes_per_s": round(statistics.median(s["episodes"] / s["seconds"] for s in runs), 3),
                    "frames": runs[0]["frames"],
                }  # fmt: skip
                if "merge_seconds" in runs[0]:  # sharded: Ray, or local shards
                    share = [s["merge_seconds"] / s["collect_seconds"] for s in runs]
                    row["merge_share"] = round(statistics.median(share), 3)
                    row["merge_seconds"] = round(statistics.median(s["merge_seconds"] for s in runs), 2)
                results.append(row)
    finally:
        bar.close()
        kept.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if ray is not None:
            ray.shutdown()
    for row in results:  # same-run ratios to one local worker with the same options
        ref = next(r for r in results if r["point"] == "local:1" and (r["multisampling"], r["vcodec"]) ==
                   (row["multisampling"], row["vcodec"])) if "local:1" in cfg.points else None  # fmt: skip
        if ref:
            row["ratio_to_local_1"] = round(row["frames_per_s"] / ref["frames_per_s"], 2)
    return {"results": results, "costs": costs, "cpus": os.cpu_count(), "config": vars(cfg)}


def _run(cfg: CollectConfig) -> dict:
    from genba.datasets.collect import run_collect

    return run_collect(cfg)


def _costs(cfg: CollectConfig) -> dict:
    """Per-frame milliseconds of simulate+render and of writing (lerobot's writer and encoder) on one core."""
    from genba.datasets.collect import _probe_env, dataset_features
    from genba.datasets.simulate import close_envs, simulate_episode
    from genba.datasets.writer import open_writer

    job = {"task": cfg.task, "env": cfg.env_overrides(), "noise": 0.0, "base_seed": cfg.seed,
           "samples": None if cfg.multisampling else 0}  # fmt: skip
    simulate_episode({**job, "attempt": 0})  # builds the env and its renderer (not timed)
    started = time.perf_counter()
    episodes = [simulate_episode({**job, "attempt": a}) for a in range(cfg.episodes)]
    sim_s = time.perf_counter() - started
    close_envs()
    frames = sum(e["length"] for e in episodes)
    fps, dim = _probe_env(cfg)
    writer = open_writer(cfg.out, fps, dataset_features(cfg, dim), cfg.identity(), video=cfg.video())
    started = time.perf_counter()
    try:
        for e in episodes:
            writer.write_episode(e.pop("frames"), e["task"], e)
    finally:
        writer.close()
    write_s = time.perf_counter() - started
    try:
        decode = _decode_costs(Path(cfg.out))
    finally:
        shutil.rmtree(cfg.out, ignore_errors=True)
    return {"sim_render_ms": round(1000 * sim_s / frames, 2), "write_ms": round(1000 * write_s / frames, 2),
            **decode, "frames": frames}  # fmt: skip


def _decode_costs(root: Path, samples: int = 200) -> dict:
    """Milliseconds per dataset frame (every camera) to decode the dataset's videos with genba's clip loader's
    decoder: every frame in order, episode by episode (the frame cache's build), and single frames at random rows
    (a loader without a cache). Decoders stay open across calls, as in a loader's worker."""
    import numpy as np

    from genba.datasets.clips import ClipConfig, ClipDataset

    ds = ClipDataset(ClipConfig(data=str(root), obs_frames=1, action_horizon=1, cache="off"))
    videos = list(ds.video.values())
    n = int(ds.ep_to[-1])
    started = time.perf_counter()
    for video in videos:
        for a, b in zip(ds.ep_from, ds.ep_to, strict=True):
            video.get(np.arange(a, b))
    in_order_s = time.perf_counter() - started
    rows = np.random.default_rng(0).integers(0, n, samples)
    started = time.perf_counter()
    for row in rows:
        for video in videos:
            video.get(np.array([row]))
    random_s = time.perf_counter() - started
    return {"decode_in_order_ms": round(1000 * in_order_s / n, 3),
            "decode_random_ms": round(1000 * random_s / samples, 3)}  # fmt: skip
