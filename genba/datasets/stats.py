"""Normalization statistics per feature, and the one `Normalizer` used at training, evaluation and serving time.

Statistics come from the dataset's own `meta/stats.json` (lerobot's, over every episode) or are recomputed over the
episodes of a clip dataset (its training split, so validation episodes never leak into them). Each feature has
`mean, std, min, max, q01, q10, q50, q90, q99` (lerobot's names) and `count`; image features have per-channel
values of shape (3, 1, 1) on the [0, 1] scale, like lerobot's.

They are saved as JSON next to a checkpoint (`Normalizer.save(folder / STATS_FILE)`) and loaded back with
`Normalizer.load`: the checkpoint then carries everything needed to normalize observations and unnormalize
actions the same way everywhere. Keys are the clip sample's keys (after camera renames); `future.<rest>` uses the
statistics of `observation.<rest>` (future frames are observations of later steps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.io import write_json

STATS_FILE = "normalization.json"
STAT_NAMES = ("mean", "std", "min", "max", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
MODES = ("mean_std", "min_max", "quantile", "identity")  # quantile: q01 -> -1, q99 -> +1 (pi0-style)
EPS = 1e-8
# A future target is an observation of a later step: future.<rest> is normalized like observation.<rest>.
_FUTURE, _OBSERVATION = f"{keys.FUTURE}.", f"{keys.OBSERVATION}."
IMAGE_STATS_FRAMES = 2000  # frames per camera sampled for recomputed image statistics
IMAGE_STATS_CHUNK = 64  # frames decoded at once while counting them


def numeric_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """x (N, D) -> each statistic (D,), float64 then stored as lists."""
    x = np.asarray(x, dtype=np.float64)
    out = {
        "mean": x.mean(0),
        "std": x.std(0),
        "min": x.min(0),
        "max": x.max(0),
        **{name: np.quantile(x, q, axis=0) for name, q in QUANTILES.items()},
        "count": np.asarray([len(x)]),
    }
    return out


def channel_histograms(frames: np.ndarray) -> np.ndarray:
    """frames (N, 3, H, W) uint8 -> (3, 256) int64 pixel counts per channel."""
    return np.stack([np.bincount(frames[:, c].reshape(-1), minlength=256) for c in range(3)])


def histogram_stats(hist: np.ndarray) -> dict[str, np.ndarray]:
    """(3, 256) pixel counts -> per-channel statistics (3, 1, 1) on the [0, 1] scale.

    The same numbers as `numeric_stats` over the pixels themselves (quantiles by numpy's default linear rule), but
    from 256 counts per channel: the pixels are never held as floats, so memory does not grow with the frames
    sampled or their resolution (2000 frames of 480x640 would be 15 GB of float64)."""
    values = np.arange(256, dtype=np.float64) / 255.0  # (256,)
    hist = np.asarray(hist, dtype=np.int64)
    n = hist.sum(1)  # (3,) pixels per channel
    cum = np.cumsum(hist, 1)  # (3, 256)

    def order_stat(k: np.ndarray) -> np.ndarray:  # (3,) the k-th smallest pixel (0-based) of each channel
        return values[[np.searchsorted(cum[c], k[c], side="right") for c in range(3)]]

    mean = hist @ values / n
    out = {
        "mean": mean,
        "std": np.sqrt((hist * (values[None] - mean[:, None]) ** 2).sum(1) / n),
        "min": order_stat(np.zeros(3, np.int64)),
        "max": order_stat(n - 1),
    }
    for name, q in QUANTILES.items():
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        a, b = order_stat(lo), order_stat(np.minimum(lo + 1, n - 1))
        out[name] = a + (pos - lo) * (b - a)
    stats = {k: v.reshape(3, 1, 1) for k, v in out.items()}
    stats["count"] = np.asarray([n[0]])
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """frames (N, 3, H, W) uint8 -> per-channel statistics (3, 1, 1) on the [0, 1] scale."""
    return histogram_stats(channel_histograms(frames))


def compute_stats(ds: Any, episodes: list[int] | None = None, images: bool = True) -> dict[str, dict]:
    """Statistics of a `ClipDataset`'s numeric features (and cameras) over `episodes` (default: the dataset's own)."""
    episodes = ds.episodes if episodes is None else episodes
    if len(episodes) == 0:
        raise GenbaError(f"no episodes of {ds.root} to take statistics from (an empty split?)")
    rows = np.concatenate([np.arange(ds.ep_from[e], ds.ep_to[e]) for e in episodes])
    cfg = ds.cfg
    out: dict[str, dict] = {}
    for key in dict.fromkeys([cfg.state_key, cfg.action_key, *cfg.extra_keys]):
        out[key] = numeric_stats(ds.columns[key][rows])
    if images:
        rng = np.random.default_rng(0)  # the same frames every time: recomputed stats are reproducible
        pick = np.sort(rng.choice(rows, size=min(len(rows), IMAGE_STATS_FRAMES), replace=False))
        # One read per episode and chunk (VideoFrames.get takes rows of one episode), counted into histograms:
        # memory holds one chunk of frames, whatever the number sampled.
        reads = []
        for e in np.unique(ds.episode_of_row[pick]):
            rows_e = pick[ds.episode_of_row[pick] == e]
            reads += np.array_split(rows_e, -(-len(rows_e) // IMAGE_STATS_CHUNK))
        for name, video in ds.video.items():
            hist = sum(channel_histograms(video.get(part).numpy()) for part in reads)
            out[keys.image_key(name)] = histogram_stats(hist)
    return {k: _as_lists(v) for k, v in out.items()}


def stats_from_meta(ds: Any) -> dict[str, dict]:
    """The dataset's meta/stats.json (lerobot's, all episodes) for the clip dataset's features, renamed like it."""
    meta_stats = ds.meta.stats
    if not meta_stats:
        raise GenbaError(f"{ds.root} has no meta/stats.json; use stats=compute")
    cfg = ds.cfg
    wanted = {k: k for k in (cfg.state_key, cfg.action_key, *cfg.extra_keys)}
    wanted.update({keys.image_key(name): key for name, key in ds.cameras.items()})
    out = {}
    for ours, theirs in wanted.items():
        if theirs not in meta_stats:
            raise GenbaError(f"{ds.root / 'meta/stats.json'} has no statistics for {theirs!r}; use stats=compute")
        out[ours] = _as_lists({k: v for k, v in meta_stats[theirs].items() if k in (*STAT_NAMES, "count")})
    return out


def _as_lists(stats: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in stats.items()}


def save_stats(path: str | Path, stats: dict[str, dict]) -> None:
    write_json(path, stats)


def load_stats(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenbaError(f"cannot read normalization statistics {path}: {e}") from None
    if not isinstance(stats, dict) or not all(isinstance(v, dict) for v in stats.values()):
        raise GenbaError(f"{path} is not a statistics file (feature -> {{mean, std, ...}})")
    return stats


def default_modes(stats: dict[str, dict]) -> dict[str, str]:
    """Images mean/std (ImageNet-style); state and actions by quantiles (robust to outliers, as in pi0)."""
    return {k: "mean_std" if k.startswith(keys.OBS_IMAGES) else "quantile" for k in stats}


class Normalizer:
    """normalize(batch) / unnormalize(batch) on dicts of torch tensors or numpy arrays, by feature key.

    Keys without statistics pass through unchanged; uint8 images are scaled to [0, 1] first (the stats' scale).
    Feature stats broadcast over leading (B, T) dims: state (..., S), images (..., 3, H, W).
    """

    def __init__(self, stats: dict[str, dict], modes: dict[str, str] | None = None) -> None:
        self.stats = stats
        self.modes = {**default_modes(stats), **(modes or {})}
        for key, mode in self.modes.items():
            if mode not in MODES:
                raise GenbaError(f"normalization mode {mode!r} for {key!r} (valid: {', '.join(MODES)})")
            if key not in stats and mode != "identity":
                raise GenbaError(f"no statistics for {key!r} (have: {', '.join(stats)})")
            need = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99")}.get(mode, ())
            missing = [n for n in need if n not in stats.get(key, {})]
            if missing:
                raise GenbaError(f"statistics of {key!r} lack {missing[0]!r}, needed by mode {mode!r}")

    def _stats_key(self, key: str) -> str | None:
        if key in self.modes:
            return key
        if key.startswith(_FUTURE):
            alias = _OBSERVATION + key.removeprefix(_FUTURE)
            return alias if alias in self.modes else None
        return None

    def _affine(self, key: str, like: Any) -> tuple[Any, Any] | None:
        """(shift, scale) with normalized = (x - shift) / scale, in `like`'s array library and dtype."""
        mode = self.modes[key]
        s = self.stats.get(key, {})
        if mode == "identity":
            return None
        if mode == "mean_std":
            shift, scale = np.asarray(s["mean"]), np.asarray(s["std"])
        else:
            lo, hi = ("min", "max") if mode == "min_max" else ("q01", "q99")
            lo, hi = np.asarray(s[lo]), np.asarray(s[hi])
            shift, scale = (lo + hi) / 2, (hi - lo) / 2  # [lo, hi] -> [-1, 1]
        scale = np.maximum(scale, EPS)
        if hasattr(like, "new_tensor"):  # torch
            return like.new_tensor(shift), like.new_tensor(scale)
        return shift.astype(like.dtype), scale.astype(like.dtype)

    def normalize(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for key, x in batch.items():
            sk = self._stats_key(key)
            if sk is None or self.modes[sk] == "identity":
                continue
            x = _to_float(x)
            shift, scale = self._affine(sk, x)
            out[key] = (x - shift) / scale
        return out

    def unnormalize(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The inverse for numeric features (actions out of the policy); images come back as float in [0, 1]."""
        out = dict(batch)
        for key, x in batch.items():
            sk = self._stats_key(key)
            if sk is None or self.modes[sk] == "identity":
                continue
            shift, scale = self._affine(sk, x)
            out[key] = x * scale + shift
        return out

    def to_dict(self) -> dict:
        return {"modes": self.modes, "stats": self.stats}

    def save(self, path: str | Path) -> None:
        save_stats(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        data = load_stats(path)
        if set(data) != {"modes", "stats"}:
            raise GenbaError(f"{path} is not a saved Normalizer (keys modes, stats)")
        return cls(data["stats"], data["modes"])


def _to_float(x: Any) -> Any:
    """uint8 images -> float32 in [0, 1]; other arrays -> float32."""
    if hasattr(x, "dtype") and str(x.dtype) in ("torch.uint8", "uint8"):
        return x.float() / 255.0 if hasattr(x, "float") else x.astype(np.float32) / 255.0
    if hasattr(x, "float"):
        return x.float()
    return np.asarray(x, dtype=np.float32)
