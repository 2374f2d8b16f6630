"""World-model clips from any LeRobotDataset v3: windows of T consecutive frames that fit inside one episode.

    ds = clip_dataset("data/pick_place", frames=8, image_size=64, episodes=split["train"])
    data = ClipBatches(ds, batch_size=16, seed=0)          # data(epoch) -> batches, for genba.train.train
    for batch in data(0): ...

A window starting at frame t of its episode holds frames t .. t+T-1 (`observation.*` is frame t, `future.*` the
rest) and actions t .. t+T-1; only starts whose window ends inside the episode are drawn, so no frame is padding.
The order is a permutation seeded by (seed, epoch): the same batches on every run and every resume.

Success labels (the world model's success head): `success_labels(ds)` gives every frame's `next.success`, 1 where
the task holds after that frame's action. From the dataset's own `next.success` column when it has one (LeRobot's
name, as in lerobot-recorded sim datasets); else from genba's per-episode metadata (`genba collect` records each
episode's `success`, and the sim ends an episode on success, so only a successful episode's last frame is 1). Failed
episodes are in a dataset only when collected with `keep_failed=true`, usually with `noise=` (a noisy expert).
With labels, each batch carries `next.success` (B, T) float32 beside the clip; `oversample=k` draws each window
that holds a success k times per epoch (a successful episode has one such window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from genba import keys
from genba.datasets.clips import ClipConfig, ClipDataset, collate_clips
from genba.errors import GenbaError


def clip_dataset(
    data: str,
    frames: int,
    *,
    image_size: int = 0,
    cameras: list[str] | None = None,
    episodes: list[int] | None = None,
    state_key: str = keys.OBS_STATE,
    action_key: str = keys.ACTION,
    progress: bool = True,
) -> ClipDataset:
    """A ClipDataset of T=`frames` consecutive frames per sample (observation frame + T-1 future frames)."""
    cfg = ClipConfig(
        data=data,
        cameras=list(cameras or []),
        obs_frames=1,
        future_frames=frames - 1,
        action_horizon=frames,
        image_size=image_size,
        state_key=state_key,
        action_key=action_key,
    )
    ds = ClipDataset(cfg, episodes=episodes, progress=progress)
    if not ds.cameras:
        raise GenbaError(f"{ds.root} has no camera (no video feature): a world model needs at least one")
    return ds


def success_labels(ds: ClipDataset) -> np.ndarray | None:
    """next.success of every frame of the dataset, (total frames,) float32 by absolute index; None without labels."""
    from genba.datasets import frames as fr
    from genba.datasets.commit import read_all_episode_meta

    if keys.NEXT_SUCCESS in ds.meta.features:
        column = fr.load_columns(ds.meta, [keys.NEXT_SUCCESS])[keys.NEXT_SUCCESS]
        return column.reshape(len(column), -1)[:, 0].astype(np.float32)
    records = read_all_episode_meta(ds.root)
    if not records or len(records) != len(ds.ep_from) or any("success" not in r for r in records):
        return None
    labels = np.zeros(int(ds.ep_to.max()), np.float32)
    for r in records:
        if r["success"]:
            labels[ds.ep_to[r["episode_index"]] - 1] = 1.0
    return labels


def dataset_tasks(ds: ClipDataset) -> list[str]:
    """The genba sim tasks a dataset's episodes come from (genba's metadata), sorted; [] for other datasets."""
    from genba.datasets.commit import read_all_episode_meta

    records = read_all_episode_meta(ds.root) or []
    return sorted({r["spec"]["task"] for r in records if isinstance(r.get("spec"), dict) and "task" in r["spec"]})


def window_starts(ds: ClipDataset, frames: int, stride: int = 1) -> np.ndarray:
    """Indices into `ds` (its rows) whose window of `frames` frames ends inside the episode: (M,) int64."""
    t = ds.rows
    ep = ds.episode_of_row[t]
    offset = t - ds.ep_from[ep]
    fits = t + frames <= ds.ep_to[ep]
    keep = fits & (offset % stride == 0)
    if not keep.any():
        longest = int((ds.ep_to - ds.ep_from)[ds.episodes].max()) if len(ds.episodes) else 0
        raise GenbaError(f"no window of {frames} frames fits in the episodes of {ds.root} (longest: {longest})")
    return np.flatnonzero(keep)


class ClipBatches:
    """`data(epoch)` for the training loop: shuffled batches of whole windows, seeded by (seed, epoch)."""

    def __init__(
        self,
        ds: ClipDataset,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        labels: np.ndarray | None = None,
        oversample: int = 1,
    ) -> None:
        frames = ds.cfg.future_frames + 1
        self.ds, self.batch_size, self.seed, self.shuffle, self.labels = ds, batch_size, seed, shuffle, labels
        self.starts = window_starts(ds, frames)
        if labels is not None and oversample > 1:  # windows holding a success, `oversample` times each per epoch
            hit = labels[ds.rows[self.starts][:, None] + np.arange(frames)].any(1)
            self.starts = np.concatenate([self.starts, np.repeat(self.starts[hit], oversample - 1)])
        if len(self.starts) < batch_size:
            raise GenbaError(
                f"{len(self.starts)} windows of {frames} frames in {ds.root}, fewer than batch_size={batch_size}"
            )

    def __len__(self) -> int:
        """Batches per epoch (the last, incomplete one is dropped)."""
        return len(self.starts) // self.batch_size

    def __call__(self, epoch: int) -> Epoch:
        order = self.starts
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = self.starts[torch.randperm(len(self.starts), generator=g).numpy()]
        return Epoch(self.ds, order, self.batch_size, self.labels)


class Epoch:
    """One epoch's batches as a lazy sequence: batch i is loaded when indexed (under torchrun each process loads
    only its own, genba.train.dist.shard)."""

    def __init__(self, ds: ClipDataset, order: np.ndarray, batch_size: int, labels: np.ndarray | None = None) -> None:
        self.ds, self.order, self.batch_size, self.labels = ds, order, batch_size, labels

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        batch = collate_clips(self.ds.__getitems__(rows.tolist()))
        if self.labels is not None:  # windows lie inside one episode: frames t .. t+T-1 by absolute index
            frames = self.ds.rows[rows][:, None] + np.arange(self.ds.cfg.future_frames + 1)  # (B, T)
            batch[keys.NEXT_SUCCESS] = torch.from_numpy(self.labels[frames])
        return batch

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))


class MappedBatches:
    """`data(epoch)` of another such source whose every batch `fn(batch, rng)` extends, with a generator seeded by
    (seed, epoch, batch index): the same batches on every run, resume and rank."""

    def __init__(self, batches: Any, fn: Callable[[dict, np.random.Generator], dict], seed: int = 0) -> None:
        self.batches, self.fn, self.seed = batches, fn, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __call__(self, epoch: int) -> MappedEpoch:
        return MappedEpoch(self, epoch, self.batches(epoch))


class MappedEpoch:
    def __init__(self, parent: MappedBatches, epoch: int, batches: Any) -> None:
        self.parent, self.epoch, self.batches = parent, epoch, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        p = self.parent
        return p.fn(self.batches[i], np.random.default_rng([p.seed, self.epoch, i]))

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))


def fixed_batches(
    ds: ClipDataset, batch_size: int, max_batches: int, seed: int = 0, labels: np.ndarray | None = None
) -> list[dict]:
    """A fixed sample of validation batches (the same ones at every evaluation of a run)."""
    size = min(batch_size, len(window_starts(ds, ds.cfg.future_frames + 1)))
    epoch = ClipBatches(ds, size, seed=seed, labels=labels)(0)
    return [epoch[i] for i in range(min(max_batches, len(epoch)))]
