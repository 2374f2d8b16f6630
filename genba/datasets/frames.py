"""Random access to a LeRobotDataset v3 as plain arrays: tabular columns in RAM, video frames from a disk cache.

Why this is fast: lerobot's `LeRobotDataset.__getitem__` reads its rows through the Hugging Face dataset (a python
dict per row and per delta index) and asks torchcodec for each sample's frames, which seeks back to a keyframe and
decodes forward, every sample again. Here:

- the numeric columns (state, action, ...) are read once, through lerobot's own `load_nested_dataset`, into numpy
  arrays indexed by the dataset's absolute frame `index`; a window is one fancy-indexing call;
- every video frame is decoded once, in order, into a uint8 `np.memmap` file per camera, (N, 3, H, W), already
  resized to the target size. A sample's frames are then one memory copy. The cache is keyed by a fingerprint of
  the dataset's files (path, size, mtime) and of the resize, so a changed dataset gets a fresh cache and the stale
  one is deleted; it lives outside the dataset folder (never touch user data) under `cache_dir`;
- datasets whose cache would not fit (`cache_max_gb`, free disk) are decoded per sample instead, with the video
  decoders kept open per worker process and one batched `get_frames_at` per camera (lerobot's own access pattern).

The frame chosen for a dataset row is the one lerobot's torchcodec backend returns: index
`round((from_timestamp + timestamp) * average_fps)` in the episode's video file, decoded with seek_mode
"approximate" like lerobot, so the cached pixels equal lerobot's (tests/datasets/test_clips_interop.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from genba.errors import GenbaError
from genba.io import atomic_path, one_line, write_json

CACHE_VERSION = 1  # bump when the cache layout or the frame choice changes: old caches are then never reused
DEFAULT_CACHE_DIR = Path(os.environ.get("GENBA_CACHE", Path.home() / ".cache" / "genba")) / "frames"
BUILD_CHUNK = 64  # frames decoded per call while building the cache
DECODERS_PER_WORKER = 100  # open video decoders kept per worker on the uncached path (LRU; lerobot keeps 100 too)


def resolve_root(data: str, revision: str | None = None) -> Path:
    """A local dataset folder, or a Hugging Face hub repo id downloaded (where a network exists) to lerobot's cache."""
    path = Path(data).expanduser()
    if path.exists():
        if not (path / "meta" / "info.json").is_file():
            raise GenbaError(f"{path} is not a LeRobotDataset v3 folder (no meta/info.json)")
        return path
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", data):
        raise GenbaError(f"data={data!r}: no such folder, and not a hub repo id of the form owner/name")
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        return Path(LeRobotDataset(data, revision=revision).root)  # downloads meta, data and videos
    except Exception as e:  # network, auth, missing repo: all mean "no dataset here" to the user
        raise GenbaError(
            f"data={data!r}: not a local folder and the hub download failed ({one_line(e)}); "
            "pass a local LeRobotDataset v3 folder where there is no network"
        ) from None


def load_metadata(root: Path) -> Any:
    """lerobot's LeRobotDatasetMetadata of a local folder, with errors that name the file."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    try:
        meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
    except Exception as e:
        raise GenbaError(f"cannot read the metadata under {root / 'meta'} ({one_line(e)})") from None
    if meta.total_episodes == 0 or meta.episodes is None:
        raise GenbaError(f"{root} holds no episodes")
    return meta


def episode_table(meta: Any) -> dict[str, np.ndarray | list]:
    """Per-episode columns of meta/episodes as plain python/numpy: from/to index, and per video its file and offset."""
    eps = meta.episodes
    table: dict[str, np.ndarray | list] = {
        "episode_index": np.asarray(eps["episode_index"], dtype=np.int64),
        "from": np.asarray(eps["dataset_from_index"], dtype=np.int64),
        "to": np.asarray(eps["dataset_to_index"], dtype=np.int64),
    }
    for key in meta.video_keys:
        table[f"{key}/from_timestamp"] = np.asarray(eps[f"videos/{key}/from_timestamp"], dtype=np.float64)
        table[f"{key}/path"] = [str(meta.root / meta.get_video_file_path(i, key)) for i in range(meta.total_episodes)]
    return table


def load_columns(meta: Any, keys: list[str]) -> dict[str, np.ndarray]:
    """The numeric columns `keys` plus index/episode_index/timestamp/task_index, (N, ...) arrays in `index` order."""
    import pyarrow.parquet as pq
    from lerobot.datasets.feature_utils import get_hf_features_from_features
    from lerobot.datasets.io_utils import load_nested_dataset

    root = Path(meta.root)
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise GenbaError(f"{root / 'data'} holds no parquet file")
    eps = meta.episodes
    for f in files:  # read each footer first, so that a corrupt file is named (the concatenation below would not)
        try:
            pq.read_metadata(f)
        except Exception as e:
            rel = f.relative_to(root)
            owners = [i for i in range(meta.total_episodes) if str(meta.get_data_file_path(i)) == str(rel)]
            raise GenbaError(f"corrupt parquet file {f} (episodes {owners}): {one_line(e)}") from None
    names = ["index", "episode_index", "timestamp", "task_index", *keys]
    try:
        table = load_nested_dataset(root / "data", features=get_hf_features_from_features(meta.features)).data
        columns = {k: _column_to_numpy(k, table.column(k), meta.features[k]["shape"]) for k in names}
    except GenbaError:
        raise
    except Exception as e:
        raise GenbaError(f"cannot read the data parquet files under {root / 'data'}: {one_line(e)}") from None
    order = np.argsort(columns["index"], kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    n = len(order)
    if not np.array_equal(columns["index"], np.arange(n)):
        raise GenbaError(f"{root / 'data'}: the `index` column is not 0..{n - 1} (a partial or filtered dataset?)")
    if n != int(eps["dataset_to_index"][-1]):
        raise GenbaError(f"{root}: data holds {n} frames but meta/episodes says {int(eps['dataset_to_index'][-1])}")
    return columns


def _column_to_numpy(name: str, column: Any, shape: list[int]) -> np.ndarray:
    """An arrow column of scalars -> (N,), of (nested) lists -> (N, *shape) numpy array, without a python loop."""
    import pyarrow as pa

    def is_list(t: Any) -> bool:
        return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)

    chunked = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = chunked
    shape = list(shape) if is_list(chunked.type) else []  # lerobot stores (1,) scalars like index unnested
    while is_list(values.type):
        values = values.flatten()
    flat = values.to_numpy(zero_copy_only=False)
    try:
        return flat.reshape(len(chunked), *shape)
    except ValueError:
        raise GenbaError(
            f"column {name!r} has {flat.size} values for {len(chunked)} rows, not the shape {shape} "
            "declared in meta/info.json"
        ) from None


def resize_frames(frames: Any, size: int) -> Any:
    """(T, 3, H, W) uint8 tensor -> (T, 3, size, size) uint8: bilinear with antialias, rounded. Aspect ratio is not
    kept (a 4:3 camera is squeezed), the usual choice of VLA policies; one function for every path, so that genba's
    clips and a resized lerobot sample are identical."""
    import torch

    if size <= 0 or (frames.shape[-2] == size and frames.shape[-1] == size):
        return frames
    out = torch.nn.functional.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def fingerprint(root: Path, video_key: str, size: int) -> str:
    """Changes whenever a file the cache depends on changes (path, size, mtime), or the resize does."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{video_key}|{size}".encode())
    paths = [root / "meta" / "info.json", *sorted((root / "meta" / "episodes").glob("*/*.parquet"))]
    paths += sorted((root / "data").glob("*/*.parquet")) + sorted((root / "videos" / video_key).glob("*/*.mp4"))
    for p in paths:
        st = p.stat()
        h.update(f"|{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


class VideoFrames:
    """Frames of one camera for any set of absolute dataset indices: `get(indices (T,)) -> (T, 3, H, W) uint8`.

    `cached=True` reads a memmap built once by `build()`; otherwise decodes per call with decoders kept open.
    Pickles without its open files, so that each DataLoader worker opens its own.
    """

    def __init__(
        self,
        meta: Any,
        episodes: dict,
        timestamps: np.ndarray,
        episode_of_row: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray],
        video_key: str,
        size: int,
        cache_dir: Path | None,
    ) -> None:
        self.root = Path(meta.root)
        self.fps = float(meta.fps)
        self.key = video_key
        h, w = meta.features[video_key]["shape"][:2]
        names = meta.features[video_key].get("names") or []
        if list(names[:1]) == ["channels"]:  # a few datasets declare (C, H, W)
            h, w = meta.features[video_key]["shape"][1:3]
        self.shape = (3, size or h, size or w)  # (3, H, W) of a returned frame
        self.source_shape = (h, w)
        self.size = size
        self.paths: list[str] = episodes[f"{video_key}/path"]
        self.offsets: np.ndarray = episodes[f"{video_key}/from_timestamp"]
        self.timestamps = timestamps
        self.episode_of_row = episode_of_row
        self.ep_from, self.ep_to = bounds  # (E,) absolute row range [from, to) of each episode
        self.n = len(timestamps)
        self.cache_file: Path | None = None
        if cache_dir is not None:
            fp = fingerprint(self.root, video_key, size)
            self.cache_file = cache_dir / fp / f"{video_key}.npy"
        self._mm: np.ndarray | None = None
        self._decoders: OrderedDict[str, Any] = OrderedDict()
        self._pid = os.getpid()

    # --- construction-time checks ---

    def check(self) -> None:
        """Every video file exists and opens, with enough frames of the declared size, before training starts."""
        needed: dict[str, tuple[int, int]] = {}  # path -> (first episode in it, last frame index needed)
        for ep, path in enumerate(self.paths):
            if self.ep_to[ep] > self.ep_from[ep]:
                last = int(self._file_indices(self.ep_to[ep : ep + 1] - 1, ep, self.fps)[0])
                first_ep, prev = needed.get(path, (ep, 0))
                needed[path] = (first_ep, max(prev, last))
        for path, (ep, last) in needed.items():
            if not Path(path).is_file():
                raise GenbaError(f"missing video file {path} (episode {ep}, {self.key})")
            dec = self._open(path, ep)
            md = dec.metadata
            if (md.height, md.width) != tuple(self.source_shape):
                raise GenbaError(
                    f"{path} (episode {ep}): frames are {md.height}x{md.width}, meta/info.json says "
                    f"{self.source_shape[0]}x{self.source_shape[1]} for {self.key}"
                )
            count = md.num_frames if md.num_frames is not None else 0
            if count and last >= count + 1:  # +1: lerobot tolerates the last timestamp rounding one past the end
                raise GenbaError(f"{path} (episode {ep}): {count} frames, but the data needs frame {last}")
        self._decoders.clear()

    def _open(self, path: str, ep: int) -> Any:
        from torchcodec.decoders import VideoDecoder

        if self._pid != os.getpid():  # a decoder opened before a fork is not used in the child
            self._decoders, self._pid = OrderedDict(), os.getpid()
        dec = self._decoders.get(path)
        if dec is not None:
            self._decoders.move_to_end(path)
            return dec
        try:
            dec = VideoDecoder(path, seek_mode="approximate")  # lerobot's mode: same index -> frame mapping
        except Exception as e:
            raise GenbaError(f"corrupt video file {path} (episode {ep}, {self.key}): {one_line(e)}") from None
        self._decoders[path] = dec
        while len(self._decoders) > DECODERS_PER_WORKER:
            self._decoders.popitem(last=False)
        return dec

    def _file_indices(self, rows: np.ndarray, ep: int, fps: float) -> np.ndarray:
        """Frame numbers in the episode's video file for dataset rows `rows` (lerobot's torchcodec rule)."""
        return np.round((self.offsets[ep] + self.timestamps[rows]) * fps).astype(np.int64)

    def _decode(self, rows: np.ndarray) -> Any:
        """(T, 3, H, W) uint8 tensor of the frames of `rows` (all of one episode), decoded now."""
        ep = int(self.episode_of_row[rows[0]])
        path = self.paths[ep]
        dec = self._open(path, ep)
        idx = self._file_indices(rows, ep, dec.metadata.average_fps)
        try:
            frames = dec.get_frames_at(indices=idx.tolist()).data
        except Exception as e:
            raise GenbaError(
                f"cannot decode frames {idx.min()}..{idx.max()} of {path} (episode {ep}, {self.key}): {one_line(e)}"
            ) from None
        return resize_frames(frames, self.size)

    # --- the disk cache ---

    @property
    def cache_bytes(self) -> int:
        return self.n * int(np.prod(self.shape))

    def build(self, progress: Any = None) -> bool:
        """Decode every frame once into the memmap (atomic: a killed build leaves no half cache). True if built now."""
        assert self.cache_file is not None
        if self.cache_file.is_file():
            return False
        folder = self.cache_file.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._drop_stale(folder)
        try:
            with atomic_path(self.cache_file) as tmp:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(self.n, *self.shape))
                for ep in range(len(self.ep_from)):  # in chunks: memory stays bounded for long, large episodes
                    for lo in range(int(self.ep_from[ep]), int(self.ep_to[ep]), BUILD_CHUNK):
                        rows = np.arange(lo, min(lo + BUILD_CHUNK, int(self.ep_to[ep])))
                        mm[rows] = self._decode(rows).numpy()
                        if progress is not None:
                            progress.update(len(rows))
                mm.flush()
                del mm
        except OSError as e:
            raise GenbaError(
                f"cannot write the frame cache {self.cache_file} ({e.strerror or one_line(e)}); "
                "free disk space, set cache_dir=, or cache=off"
            ) from None
        write_json(
            folder / f"{self.key}.json",
            {"root": str(self.root.resolve()), "key": self.key, "size": self.size, "shape": [self.n, *self.shape]},
        )
        self._decoders.clear()  # the parent keeps no decoder across fork
        return True

    def _drop_stale(self, folder: Path) -> None:
        """Delete caches of this same dataset, camera and size built from older files: bounded disk use. Caches of
        other sizes stay (a run training at one size and evaluating at another would rebuild both every time)."""
        me = str(self.root.resolve())
        for info in folder.parent.glob(f"*/{self.key}.json"):
            if info.parent == folder:
                continue
            try:
                old = json.loads(info.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if old.get("root") == me and old.get("key") == self.key and old.get("size", self.size) == self.size:
                (info.parent / f"{self.key}.npy").unlink(missing_ok=True)
                info.unlink(missing_ok=True)
                if not any(info.parent.iterdir()):
                    shutil.rmtree(info.parent, ignore_errors=True)

    # --- access ---

    def get(self, rows: np.ndarray) -> Any:
        """rows (T,) absolute indices, all in one episode -> (T, 3, H, W) uint8 tensor."""
        import torch

        if self.cache_file is not None:
            if self._mm is None:
                if not self.cache_file.is_file():
                    raise GenbaError(f"frame cache {self.cache_file} disappeared; rebuild by constructing the dataset")
                self._mm = np.load(self.cache_file, mmap_mode="r")
                if self._mm.shape != (self.n, *self.shape):
                    raise GenbaError(f"frame cache {self.cache_file} has shape {self._mm.shape}; delete it to rebuild")
            return torch.from_numpy(np.ascontiguousarray(self._mm[rows]))
        uniq, inverse = np.unique(rows, return_inverse=True)  # padded windows repeat the edge frame: decode it once
        return self._decode(uniq)[torch.from_numpy(inverse)]

    def gather(self, rows: np.ndarray) -> Any:
        """rows (B, T) absolute indices -> (B, T, 3, H, W) uint8 tensor, from the cache in one copy; in a DataLoader
        worker the tensor lives in shared memory already, so sending it to the main process copies nothing."""
        import torch
        from torch.utils.data import get_worker_info

        if self._mm is None:
            self.get(rows[:1, 0])
        shape = (*rows.shape, *self.shape)
        if get_worker_info() is not None:  # what torch's default_collate does in a worker
            storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(int(np.prod(shape)))
            out = torch.empty(0, dtype=torch.uint8).new(storage).view(shape)
        else:
            out = torch.empty(shape, dtype=torch.uint8)
        np.take(self._mm, rows.reshape(-1), axis=0, out=out.numpy().reshape(-1, *self.shape), mode="clip")
        return out

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mm"] = None
        state["_decoders"] = OrderedDict()
        return state
