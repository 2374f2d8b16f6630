"""`genba bench data`: clip loading samples/s, genba's pipeline vs lerobot's LeRobotDataset, on the same clips.

    genba bench data data=outputs/pick_place workers=2

Both pipelines produce the same clip (default: 2 cameras, To=2, Ta=16, Tf=8, 128x128) through a torch DataLoader
with the same workers, batch size and sample indices. lerobot's side is `LeRobotDataset(delta_timestamps=...,
return_uint8=True)` with the observation and future frames in one delta list per camera, split and resized in the
worker by `ClipDataset.from_lerobot` (the work a lerobot user would have to do too). Timing starts after each
loader's first batch (worker start-up excluded) and is repeated; the summary quotes medians and their ratio, and
checks that the two pipelines' samples are identical on `check_samples` indices (episode edges included).

genba's one-off frame-cache build is reported apart (`cache_build_s`): it is paid once per dataset version, then
reused by every run. peak_rss_mb: the peak resident memory of the main process and of genba's workers (memmap
pages the workers touch count in their RSS), measured before lerobot's phase starts.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from genba.errors import GenbaError


@dataclass
class BenchDataConfig:
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 folder (e.g. from `genba collect`)"})
    cameras: list[str] = field(default_factory=list, metadata={"help": "cameras (empty = the first two)"})
    obs_frames: int = field(default=2, metadata={"help": "To: observation frames per camera"})
    action_horizon: int = field(default=16, metadata={"help": "Ta: actions per clip"})
    future_frames: int = field(default=8, metadata={"help": "Tf: future frames per camera"})
    image_size: int = field(default=128, metadata={"help": "clip frames are resized to size x size"})
    workers: int = field(default=2, metadata={"help": "DataLoader workers, the same for both pipelines"})
    batch_size: int = field(default=16, metadata={"help": "DataLoader batch size"})
    samples: int = field(default=320, metadata={"help": "samples timed per repeat and pipeline"})
    repeats: int = field(default=3, metadata={"help": "timed passes per pipeline (the median is reported)"})
    check_samples: int = field(default=32, metadata={"help": "samples compared between the pipelines"})
    cache: str = field(default="disk", metadata={"help": "genba frame cache: disk, or off (decode per sample)"})
    cache_dir: str = field(default="", metadata={"help": "genba frame cache folder (default $GENBA_CACHE/frames)"})
    seed: int = field(default=0, metadata={"help": "seed of the sample indices"})
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/bench-data-<time>.json)"})

    def __post_init__(self) -> None:
        for name in ("obs_frames", "action_horizon", "batch_size", "samples", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.cache not in ("disk", "off"):
            raise ValueError(f"cache={self.cache!r} (valid: disk, off)")
        for name in ("future_frames", "image_size", "workers", "check_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")


class LerobotClips:
    """lerobot's LeRobotDataset, returning genba's clip layout (same keys, same split of frames, same resize)."""

    def __init__(self, lerobot_ds: Any, clips: Any) -> None:
        self.lerobot_ds, self.clips = lerobot_ds, clips

    def __len__(self) -> int:
        return len(self.lerobot_ds)

    def __getitem__(self, i: int) -> dict:
        return self.clips.from_lerobot(self.lerobot_ds[i])


def make_lerobot_clips(clips: Any) -> LerobotClips:
    """lerobot's reader over the same dataset, episodes and clip specification as `clips` (a ClipDataset)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    all_eps = clips.episodes == list(range(clips.meta.total_episodes))
    lr = LeRobotDataset(
        f"local/{clips.root.name}",
        root=clips.root,
        episodes=None if all_eps else clips.episodes,
        delta_timestamps=clips.delta_timestamps(),
        return_uint8=True,
        video_backend="torchcodec",
    )
    return LerobotClips(lr, clips)


def compare_samples(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (dtype, shape or any element), or that only one sample has."""
    import torch

    bad = sorted(set(a) ^ set(b))
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            same = (
                isinstance(x, torch.Tensor)
                and isinstance(y, torch.Tensor)
                and x.dtype == y.dtype
                and x.shape == y.shape
                and torch.equal(x, y)
            )
        else:
            same = x == y
        if not same:
            bad.append(key)
    return bad


def _time_loader(dataset: Any, indices: list[int], cfg: BenchDataConfig, collate: Any) -> float:
    """Samples/s of one pass over `indices`, from the end of the first batch (worker start-up excluded)."""
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        shuffle=False,
        collate_fn=collate,
        multiprocessing_context="fork" if cfg.workers else None,  # spawn would re-import lerobot per worker
    )
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch[next(iter(batch))]) if isinstance(batch, dict) else len(batch)
    seconds = time.perf_counter() - start
    del it, loader
    return n / seconds if seconds > 0 else float("inf")


def _peak_rss_mb() -> tuple[float, float]:
    """(main process, largest finished child) peak resident memory in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, children / 1024  # KiB on Linux


def run_bench_data(cfg: BenchDataConfig) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import default_collate
    from tqdm import tqdm

    from genba.datasets.clips import ClipConfig, ClipDataset, collate_clips
    from genba.datasets.frames import load_metadata, resolve_root

    if not cfg.data:
        raise GenbaError("data= is required: a LeRobotDataset v3 folder, e.g. from `genba collect`")
    clip_cfg = ClipConfig(
        data=cfg.data,
        cameras=list(cfg.cameras),
        obs_frames=cfg.obs_frames,
        action_horizon=cfg.action_horizon,
        future_frames=cfg.future_frames,
        image_size=cfg.image_size,
        cache=cfg.cache,
        cache_dir=cfg.cache_dir,
    )
    if not cfg.cameras:  # the benchmark's clip has two cameras: the dataset's first two
        meta = load_metadata(resolve_root(cfg.data))
        clip_cfg.cameras = [k for k in meta.video_keys if k not in meta.depth_keys][:2]
    started = time.perf_counter()
    clips = ClipDataset(clip_cfg)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(cfg.seed)
    n = len(clips)
    indices = rng.choice(n, size=cfg.samples, replace=cfg.samples > n).tolist()

    genba_rates, lerobot_rates = [], []
    bar = tqdm(total=2 * cfg.repeats, desc="bench data", unit="pass", file=sys.stderr)
    for _ in range(cfg.repeats):
        genba_rates.append(_time_loader(clips, indices, cfg, collate_clips))
        bar.update()
    main_rss, worker_rss = _peak_rss_mb()
    lerobot = make_lerobot_clips(clips)
    for _ in range(cfg.repeats):
        lerobot_rates.append(_time_loader(lerobot, indices, cfg, default_collate))
        bar.update()
    bar.close()

    # Identity check: random indices plus every episode's first and last frame (where padding happens).
    edges = sorted({int(clips.ep_from[e]) for e in clips.episodes} | {int(clips.ep_to[e]) - 1 for e in clips.episodes})
    check = edges[: cfg.check_samples // 2] + indices[: cfg.check_samples - min(len(edges), cfg.check_samples // 2)]
    mismatches = {}
    for i in check:
        bad = compare_samples(clips[i], lerobot[i])
        if bad:
            mismatches[int(i)] = bad
    genba_sps, lerobot_sps = statistics.median(genba_rates), statistics.median(lerobot_rates)
    return {
        "genba_samples_per_s": round(genba_sps, 1),
        "lerobot_samples_per_s": round(lerobot_sps, 1),
        "ratio": round(genba_sps / lerobot_sps, 2),
        "peak_rss_mb": round(max(main_rss, worker_rss), 1),
        "main_peak_rss_mb": round(main_rss, 1),
        "worker_peak_rss_mb": round(worker_rss, 1),
        "peak_rss_mb_with_lerobot": round(max(_peak_rss_mb()), 1),
        "genba_samples_per_s_runs": [round(r, 1) for r in genba_rates],
        "lerobot_samples_per_s_runs": [round(r, 1) for r in lerobot_rates],
        "samples_identical": not mismatches,
        "checked_samples": len(check),
        "mismatches": {str(k): v for k, v in list(mismatches.items())[:5]},
        "cache_build_s": round(build_s, 2),
        "cache": cfg.cache,
        "cache_built": bool(clips.cache_built),
        "cache_mb": round(sum(v.cache_bytes for v in clips.video.values()) / 2**20, 1),
        "clip": {
            "cameras": list(clips.cameras),
            "obs_frames": cfg.obs_frames,
            "action_horizon": cfg.action_horizon,
            "future_frames": cfg.future_frames,
            "image_size": cfg.image_size,
        },
        "frames": int(clips.meta.total_frames),
        "episodes": int(clips.meta.total_episodes),
        "workers": cfg.workers,
        "batch_size": cfg.batch_size,
        "samples": cfg.samples,
        "torch_threads": torch.get_num_threads(),
        "dataset": str(clips.root),
    }
