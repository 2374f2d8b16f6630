"""Clip windows over any LeRobotDataset v3: what world models and policies train on.

    ds = ClipDataset(ClipConfig(data="data/pick_place", obs_frames=2, action_horizon=16, future_frames=8))
    sample = ds[0]
    loader = DataLoader(ds, batch_size=64, num_workers=2, shuffle=True, collate_fn=collate_clips)

For the frame at absolute index t of episode [start, end), with obs stride s and future stride f:

    observation.images.<cam>          (To, 3, H, W) uint8   frames t-(To-1)s, ..., t-s, t
    observation.images.<cam>_is_pad   (To,) bool
    observation.state (+ extra_keys)  (To, S) float32, same frames, and `<key>_is_pad`
    action                            (Ta, A) float32       actions t, t+1, ..., t+Ta-1, and `action_is_pad`
    future.images.<cam>               (Tf, 3, H, W) uint8   frames t+f, ..., t+Tf*f (only when Tf > 0)
    future.state                      (Tf, S) float32,      and `future_is_pad` (Tf,)
    task                              str, the instruction; episode_index, frame_index, index: int

Windows never mix episodes: an index outside [start, end) takes the episode's edge frame, as lerobot's
`delta_timestamps` does, and its `*_is_pad` entry is True. Images stay uint8 for the trip to the training process
(4x less than float32 through the DataLoader's shared memory); normalization happens there (genba.datasets.stats).
The values equal lerobot's `LeRobotDataset(..., delta_timestamps=ds.delta_timestamps())` sample, split into the
observation and future parts (tests/datasets/test_clips_interop.py); see frames.py for why this is faster.
With `collate_clips`, a DataLoader worker gathers a whole batch per camera at once (`__getitems__`); torch's
default collate gives the same batch, one copy slower.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError

CACHE_MODES = ("auto", "disk", "off")


@dataclass
class ClipConfig:
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 folder (or hub repo id where online)"})
    cameras: list[str] = field(
        default_factory=list, metadata={"help": "cameras to load, short names or full keys (empty = every camera)"}
    )
    rename: list[str] = field(
        default_factory=list, metadata={"help": "camera renames old:new, e.g. [cam_high:front,cam_left_wrist:wrist]"}
    )
    obs_frames: int = field(default=2, metadata={"help": "To: observation frames per camera, ending at t"})
    frame_stride: int = field(default=1, metadata={"help": "steps between observation frames"})
    action_horizon: int = field(default=16, metadata={"help": "Ta: actions from step t on"})
    future_frames: int = field(default=0, metadata={"help": "Tf: future frames and states after t (world model)"})
    future_stride: int = field(default=0, metadata={"help": "steps between future frames (0 = frame_stride)"})
    image_size: int = field(default=0, metadata={"help": "resize frames to size x size (0 = as stored)"})
    state_key: str = field(default=keys.OBS_STATE, metadata={"help": "proprioceptive state feature"})
    action_key: str = field(default=keys.ACTION, metadata={"help": "action feature"})
    extra_keys: list[str] = field(
        default_factory=list, metadata={"help": "other numeric features windowed like the state"}
    )
    cache: str = field(default="auto", metadata={"help": "frame cache: auto (if it fits), disk, off (decode)"})
    cache_dir: str = field(default="", metadata={"help": "frame cache folder (default $GENBA_CACHE/frames)"})
    cache_max_gb: float = field(default=20.0, metadata={"help": "auto: largest frame cache built on disk"})
    revision: str = field(default="", metadata={"help": "hub revision (hub repo ids only)"})

    def __post_init__(self) -> None:
        for name in ("obs_frames", "frame_stride", "action_horizon"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        for name in ("future_frames", "future_stride", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 0")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache={self.cache!r} (valid: {', '.join(CACHE_MODES)})")
        for item in self.rename:
            if item.count(":") != 1 or not all(item.split(":")):
                raise ValueError(f"rename entry {item!r} must be old:new")

    @property
    def obs_deltas(self) -> list[int]:
        return [-(self.obs_frames - 1 - i) * self.frame_stride for i in range(self.obs_frames)]

    @property
    def action_deltas(self) -> list[int]:
        return list(range(self.action_horizon))

    @property
    def future_deltas(self) -> list[int]:
        stride = self.future_stride or self.frame_stride
        return [(i + 1) * stride for i in range(self.future_frames)]


_INT_KEYS = ("episode_index", "frame_index", "index")


def _short_name(key: str) -> str:
    """A camera's name in the sample: observation.images.front -> front; a lone observation.image -> image."""
    if key.startswith(keys.OBS_IMAGES + "."):
        return key.removeprefix(keys.OBS_IMAGES + ".")
    return key.removeprefix(keys.OBSERVATION + ".")


class ClipBatch(list):
    """The samples of a batch, plus the batch already collated (ClipDataset.__getitems__ -> collate_clips)."""

    def __init__(self, samples: list[dict], batch: dict[str, Any]) -> None:
        super().__init__(samples)
        self.batch = batch


def collate_clips(samples: list[dict]) -> dict[str, Any]:
    """DataLoader collate_fn for ClipDataset: the pre-collated batch when there is one, else torch's default."""
    if isinstance(samples, ClipBatch):
        return samples.batch
    return _default_collate(samples)


def _default_collate(samples: list[dict]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    return default_collate(samples)


class ClipDataset:
    """torch-style map dataset of clips (see the module docstring); `len()` = frames of the selected episodes.

    episodes: absolute episode indices to draw windows from (a split), None = all.
    transform: `transform(frames (T, 3, H, W) uint8, generator) -> same`, applied per camera to the observation and
      future frames together (one crop for the whole clip); seeded from (seed, epoch, index, camera), so a sample is
      the same whichever worker draws it. Call `set_epoch(e)` to vary it between epochs.
    """

    def __init__(
        self,
        cfg: ClipConfig,
        episodes: list[int] | None = None,
        transform: Callable | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        import numpy as np

        from genba.datasets import frames as fr

        if not cfg.data:
            raise GenbaError("data= is required: a LeRobotDataset v3 folder")
        self.cfg = cfg
        self.root = fr.resolve_root(cfg.data, cfg.revision or None)
        self.meta = fr.load_metadata(self.root)
        self.fps = float(self.meta.fps)
        table = fr.episode_table(self.meta)
        n_eps = self.meta.total_episodes
        if not np.array_equal(table["episode_index"], np.arange(n_eps)):
            raise GenbaError(f"{self.root}: meta/episodes is not episodes 0..{n_eps - 1} in order")
        self.cameras = self._select_cameras()  # {output name: dataset video key}
        self._check_features()
        numeric = [cfg.state_key, cfg.action_key, *cfg.extra_keys]
        self.columns = fr.load_columns(self.meta, numeric)
        self.ep_from, self.ep_to = table["from"], table["to"]
        self.episode_of_row = self.columns["episode_index"].astype(np.int64)
        for ep in range(n_eps):  # the data must agree with meta/episodes, or windows could cross episodes
            rows = self.episode_of_row[self.ep_from[ep] : self.ep_to[ep]]
            if len(rows) == 0 or (rows != ep).any():
                raise GenbaError(
                    f"{self.root}: episode {ep} rows {self.ep_from[ep]}..{self.ep_to[ep]} in meta/episodes do not "
                    f"match the data file {self.meta.get_data_file_path(ep)}"
                )
        lengths = self.ep_to - self.ep_from
        # Observation and future frames must fit in some episode; an action chunk may run past an episode's end,
        # padded (is_pad) like lerobot's delta_timestamps: a 16-action chunk is normal for 6-step episodes.
        frames_span = -cfg.obs_deltas[0] + max(cfg.future_deltas, default=0) + 1
        if frames_span > lengths.max():
            raise GenbaError(
                f"a clip spans {frames_span} frames (obs_frames={cfg.obs_frames}, frame_stride={cfg.frame_stride}, "
                f"future_frames={cfg.future_frames}) but the longest episode of {self.root} has {lengths.max()}"
            )
        self.episodes = list(range(n_eps)) if episodes is None else [int(e) for e in episodes]
        bad = [e for e in self.episodes if not 0 <= e < n_eps]
        if bad:
            raise GenbaError(f"episode {bad[0]} is not in {self.root} (episodes 0..{n_eps - 1})")
        self.rows = np.concatenate([np.arange(self.ep_from[e], self.ep_to[e]) for e in self.episodes] or [[]])
        self.rows = self.rows.astype(np.int64)
        self.tasks = [str(self.meta.tasks.iloc[i].name) for i in range(len(self.meta.tasks))]
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.video = {
            name: fr.VideoFrames(
                self.meta,
                table,
                self.columns["timestamp"].astype(np.float64),
                self.episode_of_row,
                (self.ep_from, self.ep_to),
                key,
                cfg.image_size,
                self._cache_dir(key),
            )
            for name, key in self.cameras.items()
        }
        for v in self.video.values():
            v.check()
        self.cache_built = self._build_cache(progress)

    # --- construction ---

    def _select_cameras(self) -> dict[str, str]:
        rgb = [k for k in self.meta.video_keys if k not in self.meta.depth_keys]
        images_only = [k for k in self.meta.image_keys if k not in self.meta.video_keys]
        short = {_short_name(k): k for k in rgb}
        wanted = self.cfg.cameras or list(short)
        chosen: dict[str, str] = {}
        for cam in wanted:
            key = short.get(cam) or (cam if cam in rgb else None)
            if key is None:
                if cam in images_only or keys.image_key(cam) in images_only:
                    raise GenbaError(f"camera {cam!r} of {self.root} is stored as PNG images, not video (unsupported)")
                valid = ", ".join(short) or "none"
                raise GenbaError(f"camera {cam!r} is not a video feature of {self.root} (valid: {valid})")
            chosen[_short_name(key)] = key
        renames = dict(item.split(":") for item in self.cfg.rename)
        unknown = [old for old in renames if old not in chosen]
        if unknown:
            raise GenbaError(f"rename: camera {unknown[0]!r} is not loaded (loaded: {', '.join(chosen)})")
        out = {renames.get(name, name): key for name, key in chosen.items()}
        if len(out) != len(chosen):
            raise GenbaError(f"rename {self.cfg.rename} maps two cameras to one name")
        return out

    def _check_features(self) -> None:
        feats = self.meta.features
        for key in (self.cfg.state_key, self.cfg.action_key, *self.cfg.extra_keys):
            if key not in feats:
                numeric = [k for k, f in feats.items() if f["dtype"] not in ("video", "image", "string")]
                raise GenbaError(f"feature {key!r} is not in {self.root} (numeric features: {', '.join(numeric)})")
            if len(feats[key]["shape"]) != 1 or feats[key]["dtype"] in ("video", "image", "string"):
                raise GenbaError(
                    f"feature {key!r} of {self.root} has shape {feats[key]['shape']} ({feats[key]['dtype']}); "
                    "a 1-D numeric vector is needed"
                )

    def _cache_dir(self, key: str) -> Path | None:
        from genba.datasets import frames as fr

        if self.cfg.cache == "off":
            return None
        folder = Path(self.cfg.cache_dir).expanduser() if self.cfg.cache_dir else fr.DEFAULT_CACHE_DIR
        if self.cfg.cache == "auto":
            size = self.cfg.image_size
            h, w = (size, size) if size else self.meta.features[key]["shape"][:2]
            need = self.meta.total_frames * 3 * h * w * len(self.cameras)  # bytes of every camera's cache
            probe = folder if folder.exists() else next(p for p in folder.parents if p.exists())
            if need > self.cfg.cache_max_gb * 2**30 or need > 0.8 * shutil.disk_usage(probe).free:
                return None
        return folder

    def _build_cache(self, progress: bool) -> bool:
        todo = [v for v in self.video.values() if v.cache_file is not None and not v.cache_file.is_file()]
        if not todo:
            return False
        from tqdm import tqdm

        with tqdm(
            total=sum(v.n for v in todo), desc="frame cache", unit="frame", file=sys.stderr, disable=not progress
        ) as bar:
            for v in todo:
                v.build(bar)
        return True

    # --- access ---

    @property
    def cached(self) -> bool:
        return all(v.cache_file is not None for v in self.video.values())

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def window(self, t: int, deltas: list[int]) -> tuple[Any, Any]:
        """(indices (T,), is_pad (T,)) of frames t + deltas, clamped to t's episode like lerobot's delta_timestamps."""
        import numpy as np

        ep = self.episode_of_row[t]
        idx = t + np.asarray(deltas, dtype=np.int64)
        pad = (idx < self.ep_from[ep]) | (idx >= self.ep_to[ep])
        return np.clip(idx, self.ep_from[ep], self.ep_to[ep] - 1), pad

    def __getitem__(self, i: int) -> dict[str, Any]:
        import numpy as np
        import torch

        cfg = self.cfg
        t = int(self.rows[i])
        obs, obs_pad = self.window(t, cfg.obs_deltas)
        act, act_pad = self.window(t, cfg.action_deltas)
        fut, fut_pad = self.window(t, cfg.future_deltas)
        to = len(obs)
        obs_pad_t, fut_pad_t = torch.from_numpy(obs_pad), torch.from_numpy(fut_pad)
        sample: dict[str, Any] = {}
        for c, (name, video) in enumerate(self.video.items()):
            frames = video.get(np.concatenate([obs, fut]))  # (To + Tf, 3, H, W) uint8, one read
            if self.transform is not None:
                g = torch.Generator().manual_seed(hash((self.seed, self.epoch, t, c)) & 0x7FFF_FFFF_FFFF_FFFF)
                frames = self.transform(frames, g)
            key = keys.image_key(name)
            sample[key], sample[keys.pad_key(key)] = frames[:to], obs_pad_t
            if cfg.future_frames:
                sample[keys.future_image_key(name)] = frames[to:]
        for key in (cfg.state_key, *cfg.extra_keys):
            sample[key] = torch.from_numpy(self.columns[key][obs])
            sample[keys.pad_key(key)] = obs_pad_t
        sample[cfg.action_key] = torch.from_numpy(self.columns[cfg.action_key][act])
        sample[keys.pad_key(cfg.action_key)] = torch.from_numpy(act_pad)
        if cfg.future_frames:
            sample[keys.FUTURE_STATE] = torch.from_numpy(self.columns[cfg.state_key][fut])
            sample[keys.FUTURE_IS_PAD] = fut_pad_t
        sample[keys.TASK] = self.tasks[int(self.columns["task_index"][t])]
        sample["episode_index"] = int(self.episode_of_row[t])
        sample["frame_index"] = t - int(self.ep_from[self.episode_of_row[t]])
        sample["index"] = t
        return sample

    def __getitems__(self, indices: list[int]) -> ClipBatch:
        """A batch at once (the DataLoader calls this): one gather per camera from the frame cache straight into
        shared memory when in a worker, instead of B per-sample copies that collate then copies again.
        Returns the samples (views into the batch, so default_collate still works); `collate_clips` takes the
        batch as is."""
        import numpy as np
        import torch

        if not self.cached or self.transform is not None:
            samples = [self[i] for i in indices]
            return ClipBatch(samples, _default_collate(samples))
        cfg = self.cfg
        t = self.rows[np.asarray(indices, dtype=np.int64)]  # (B,)
        ep = self.episode_of_row[t]
        lo, hi = self.ep_from[ep][:, None], self.ep_to[ep][:, None] - 1

        def window(deltas: list[int]) -> tuple[Any, Any]:
            idx = t[:, None] + np.asarray(deltas, dtype=np.int64).reshape(1, -1)  # (B, T)
            return np.clip(idx, lo, hi), torch.from_numpy((idx < lo) | (idx > hi))

        obs, obs_pad = window(cfg.obs_deltas)
        act, act_pad = window(cfg.action_deltas)
        fut, fut_pad = window(cfg.future_deltas)
        batch: dict[str, Any] = {}
        for name, video in self.video.items():
            key = keys.image_key(name)
            batch[key], batch[keys.pad_key(key)] = video.gather(obs), obs_pad
            if cfg.future_frames:
                batch[keys.future_image_key(name)] = video.gather(fut)
        for key in (cfg.state_key, *cfg.extra_keys):
            batch[key], batch[keys.pad_key(key)] = torch.from_numpy(self.columns[key][obs]), obs_pad
        batch[cfg.action_key] = torch.from_numpy(self.columns[cfg.action_key][act])
        batch[keys.pad_key(cfg.action_key)] = act_pad
        if cfg.future_frames:
            batch[keys.FUTURE_STATE], batch[keys.FUTURE_IS_PAD] = (
                torch.from_numpy(self.columns[cfg.state_key][fut]),
                fut_pad,
            )
        batch[keys.TASK] = [self.tasks[int(i)] for i in self.columns["task_index"][t]]
        batch["episode_index"] = torch.from_numpy(ep)
        batch["frame_index"] = torch.from_numpy(t - self.ep_from[ep])
        batch["index"] = torch.from_numpy(t)
        samples = [{k: (v[j] if k not in _INT_KEYS else int(v[j])) for k, v in batch.items()} for j in range(len(t))]
        return ClipBatch(samples, batch)

    def delta_timestamps(self) -> dict[str, list[float]]:
        """lerobot's `delta_timestamps` for the same clips: observation and future frames in one list per key."""
        frames = [d / self.fps for d in self.cfg.obs_deltas + self.cfg.future_deltas]
        out = {key: list(frames) for key in self.cameras.values()}
        out[self.cfg.state_key] = list(frames)
        for key in self.cfg.extra_keys:
            out[key] = [d / self.fps for d in self.cfg.obs_deltas]
        out[self.cfg.action_key] = [d / self.fps for d in self.cfg.action_deltas]
        return out

    def from_lerobot(self, item: dict[str, Any]) -> dict[str, Any]:
        """A lerobot sample taken with `delta_timestamps()` (return_uint8=True) -> this dataset's sample layout."""
        from genba.datasets.frames import resize_frames

        cfg, to = self.cfg, self.cfg.obs_frames
        out: dict[str, Any] = {}
        for name, key in self.cameras.items():
            frames = resize_frames(item[key], cfg.image_size)
            out[keys.image_key(name)], out[keys.pad_key(keys.image_key(name))] = (
                frames[:to],
                item[keys.pad_key(key)][:to],
            )
            if cfg.future_frames:
                out[keys.future_image_key(name)] = frames[to:]
        state, state_pad = item[cfg.state_key], item[keys.pad_key(cfg.state_key)]
        out[cfg.state_key], out[keys.pad_key(cfg.state_key)] = state[:to], state_pad[:to]
        for key in cfg.extra_keys:
            out[key], out[keys.pad_key(key)] = item[key], item[keys.pad_key(key)]
        out[cfg.action_key], out[keys.pad_key(cfg.action_key)] = (
            item[cfg.action_key],
            item[keys.pad_key(cfg.action_key)],
        )
        if cfg.future_frames:
            out[keys.FUTURE_STATE], out[keys.FUTURE_IS_PAD] = state[to:], state_pad[to:]
        out[keys.TASK] = item[keys.TASK]
        out["episode_index"] = int(item["episode_index"])
        out["frame_index"] = int(item["frame_index"])
        out["index"] = int(item["index"])
        return out
