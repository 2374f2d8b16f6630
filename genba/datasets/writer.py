"""Crash-safe, resumable episode writer on top of lerobot's own LeRobotDataset (create / resume / add_frame /
save_episode / finalize).

Why this exists. lerobot 0.6 writes a v3 dataset through long-lived writers: the data parquet's ParquetWriter stays
open (its footer, without which the file is unreadable, is written at finalize), episode metadata is buffered in
memory (`metadata_buffer_size`) until finalize, consecutive episodes are concatenated into the same .mp4 (rewritten
in place), and `info.json`, `stats.json`, `tasks.parquet` are rewritten in place after every episode. A SIGKILL at
any moment therefore leaves a dataset lerobot cannot load; after a kill between `save_episode` and `finalize`,
`info.json` counts episodes whose data is gone.

Finalizing after every episode would make each episode its own commit, but then every episode is its own data,
metadata and video files, and `resume` re-reads every metadata file: measured 0.5 s per episode after only five,
growing linearly (quadratic total), and a dataset of thousands of files loads slowly. So, like a database:

1. Segments. lerobot writes episodes into one open segment (one data file, one metadata file, one mp4 per camera,
   all new files: `resume` always starts new ones), finalized every `checkpoint_every` episodes and at the end of a
   run. Committed files of earlier segments are never opened for writing again; only info.json, stats.json and
   tasks.parquet are rewritten in place, and a snapshot of them is kept in the commit record.
2. Write-ahead log. After lerobot has taken an episode, its frames go to `meta/genba/pending/<index>.npz`, its
   metadata line to `meta/genba/episodes.jsonl`, and then `meta/genba/commit.json` is replaced atomically: that
   replace is the episode's commit point. The record and the log are genba/datasets/commit.py's; this module drives
   lerobot's writer and recovery with them.
3. Checkpoint. finalize, then a commit record with the new snapshot and the last (chunk, file) index of every file
   family; then the segment's log files are deleted.
4. Recovery, when a folder is opened: roll lerobot's files back to the last checkpoint (restore the three rewritten
   files, delete files newer than the checkpoint, lerobot's temporary encoder folders and image staging, the log's
   uncommitted tail, temporary files of killed atomic writes), replay the committed log through lerobot,
   checkpoint. Every step is idempotent, so a kill
   during recovery is recovered by the next run. A kill loses at most the episode in progress.
5. A new dataset is created in a hidden sibling folder and renamed into place once its first commit record exists,
   so a folder at `root` is always either a genba dataset or not ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np

from genba import keys
from genba.datasets.commit import (
    COMMIT_FILE,
    LOCK_FILE,
    append_episode_meta,
    check_identity,
    clear_pending,
    edited_since_checkpoint,
    keep_pending,
    new_commit,
    read_commit,
    read_pending,
    truncate_episode_audio,
    truncate_episode_meta,
    write_commit,
    write_episode_audio,
    write_pending,
)
from genba.errors import GenbaError
from genba.io import atomic_write, remove_stale_tmp

INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
_CHUNKED = re.compile(r"chunk-(\d+)/file-(\d+)\.\w+$")


def repo_id_for(root: str | Path) -> str:
    """lerobot wants "<user>/<name>"; a local dataset's name is its folder's."""
    return f"genba/{Path(root).resolve().name}"


class EpisodeWriter:
    """The single writer of one dataset folder. Open with `open_writer`; `write_episode`, `skip_attempt`, `close`."""

    def __init__(
        self, root: Path, commit: dict, lock_fd: int, checkpoint_every: int, video: dict | None = None
    ) -> None:
        self.root = root
        self.commit = commit
        self.checkpoint_every = checkpoint_every
        self.video = video
        self._lock_fd = lock_fd
        self._ds = None  # lerobot's writer of the open segment

    @property
    def episodes(self) -> int:
        return self.commit["episodes"]

    @property
    def frames(self) -> int:
        return self.commit["frames"]

    @property
    def attempts(self) -> int:
        return self.commit["attempts"]

    @property
    def successes(self) -> int:
        return self.commit["successes"]

    def write_episode(self, frames: dict[str, np.ndarray], task: str, record: dict, audio: bytes | None = None) -> int:
        """Append one episode and commit it; returns its episode_index.

        frames: feature name -> (T, *shape) array, one row per frame (every feature of the dataset except lerobot's
        automatic ones). task: the instruction. record: genba metadata for episodes.jsonl. audio: the spoken
        instruction as FLAC bytes, stored beside genba's metadata (lerobot never sees it) and listed in the record's
        `audio` dict (its `path` added here).
        """
        length = len(next(iter(frames.values())))
        if length == 0 or any(len(v) != length for v in frames.values()):
            raise ValueError(f"an episode needs >= 1 frame and equal lengths, got {[len(v) for v in frames.values()]}")
        index = self.episodes
        try:
            self._feed(frames, task, index)
            _kill_point("save_episode", index)
            write_pending(self.root, index, frames, task)
            _kill_point("log", index)
            if audio is not None:
                record = {**record, "audio": {**record.get("audio", {}), "path": write_episode_audio(
                    self.root, index, audio)}}  # fmt: skip
                _kill_point("audio", index)
            append_episode_meta(
                self.root, {"episode_index": index, **record} | {"episode_index": index, "length": length}
            )
            _kill_point("episode_meta", index)
            self.commit.update(
                episodes=index + 1,
                frames=self.frames + length,
                attempts=self.attempts + 1,
                successes=self.successes + bool(record.get("success")),
            )
            write_commit(self.root, self.commit)  # the commit point
            _kill_point("committed", index)
            if self.episodes - self.commit["checkpoint"]["episodes"] >= self.checkpoint_every:
                self.checkpoint()
        except BaseException:
            # Whatever happened (bad frame, encoder error, Ctrl-C), leave the folder at the last commit, loadable.
            self._abandon_segment()
            self.commit = read_commit(self.root)
            recover(self.root, self.commit, self.video)
            raise
        return index

    def skip_attempt(self, success: bool) -> None:
        """Count an expert attempt that is not kept (a failed episode with keep_failed=False)."""
        self.commit.update(attempts=self.attempts + 1, successes=self.successes + bool(success))
        write_commit(self.root, self.commit)

    def checkpoint(self) -> None:
        """Finalize the open segment so that lerobot can load every committed episode."""
        if self._ds is not None:
            self._ds.finalize()
            self._ds = None
        _kill_point("checkpoint", self.episodes)
        _commit_checkpoint(self.root, self.commit)

    def close(self) -> None:
        """Checkpoint (the dataset is then complete and loadable) and release the folder."""
        try:
            if self._ds is not None or self.commit["checkpoint"]["episodes"] < self.episodes:
                self.checkpoint()
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def _feed(self, frames: dict[str, np.ndarray], task: str, index: int) -> None:
        from lerobot.utils.utils import SuppressProgressBars

        if self._ds is None:
            self._ds = _resume(self.root, self.video)
        length = len(next(iter(frames.values())))
        for t in range(length):
            self._ds.add_frame({key: value[t] for key, value in frames.items()} | {keys.TASK: task})
            if t == length // 2:
                _kill_point("add_frame", index)
        with SuppressProgressBars():  # datasets' per-episode "Map" bar would interleave with collect's bar
            self._ds.save_episode()

    def _abandon_segment(self) -> None:
        """Stop lerobot's writers without trusting what they hold: recovery rebuilds the segment from the log.
        (Left alone, their __del__ would flush buffered files after the rollback.)"""
        if self._ds is not None:
            with contextlib.suppress(Exception):
                self._ds.clear_episode_buffer()
            with contextlib.suppress(Exception):
                self._ds.finalize()
            self._ds = None


def open_writer(
    root: str | Path,
    fps: int,
    features: dict[str, dict],
    identity: dict,
    robot_type: str = "genba_arm",
    checkpoint_every: int = 25,
    video: dict | None = None,
) -> EpisodeWriter:
    """Create the dataset folder, or reopen one written with the same `identity`, recovered to its last commit.

    identity: the options that define the dataset's content (task, image size, seed...); reopening with others is
    an error, never an overwrite. features: lerobot feature dict (without lerobot's automatic ones).
    checkpoint_every: episodes per segment (files per segment: 1 data, 1 metadata, 1 mp4 per camera).
    video: lerobot RGBEncoderConfig fields for the camera videos (vcodec, preset, crf...); None = lerobot's defaults.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise GenbaError(f"out={root} is a file, not a folder")
    if root.is_dir() and any(root.iterdir()):
        commit = read_commit(root)
        if commit is None:
            kind = "a LeRobotDataset not written by genba collect" if (root / INFO).exists() else "not empty"
            raise GenbaError(f"out={root} is {kind} and has no {COMMIT_FILE}; use a new or empty folder")
        check_identity(root, commit, identity, fps, features)
        edited = edited_since_checkpoint(root, commit)
        if edited:  # recovery would undo the other tool's edit, or drop what it added
            raise GenbaError(
                f"out={root} was changed by another tool since genba collect wrote it ({edited}); collect into a new "
                "folder and merge the two with lerobot-edit-dataset"
            )
    else:
        _create(root, fps, features, identity, robot_type)
    lock_fd = _lock(root)
    commit = read_commit(root)
    try:
        recover(root, commit, video)
    except BaseException:
        os.close(lock_fd)
        raise
    return EpisodeWriter(root, commit, lock_fd, checkpoint_every, video)


def recover(root: Path, commit: dict, video: dict | None = None) -> None:
    """Bring the folder to `commit`, every committed episode in lerobot's files (a no-op on a clean folder)."""
    checkpoint = commit["checkpoint"]
    truncate_episode_meta(root, commit["episodes"])
    truncate_episode_audio(root, commit["episodes"])
    _restore(root, checkpoint["snapshot"])
    for family, files in _families(root).items():
        committed = checkpoint["last_files"].get(family)
        for index, path in files:
            if committed is None or index > tuple(committed):
                path.unlink()
    for child in root.iterdir():  # lerobot's temporary encoder folders and PNG staging
        if child.is_dir() and (child.name.startswith("tmp") or child.name == "images"):
            shutil.rmtree(child)
    for folder in (root / INFO).parent, (root / COMMIT_FILE).parent:  # genba's own atomic writes, killed mid-way
        remove_stale_tmp(folder)
    logged = range(checkpoint["episodes"], commit["episodes"])
    keep_pending(root, logged)
    _kill_point("recover", commit["episodes"])
    if not logged:
        return
    ds = _resume(root, video)
    try:
        from lerobot.utils.utils import SuppressProgressBars

        for index in logged:
            frames, task = read_pending(root, index)
            for t in range(len(next(iter(frames.values())))):
                ds.add_frame({key: value[t] for key, value in frames.items()} | {keys.TASK: task})
            with SuppressProgressBars():
                ds.save_episode()
            _kill_point("replay", index)
        ds.finalize()
    except BaseException:
        with contextlib.suppress(Exception):
            ds.finalize()
        raise
    _commit_checkpoint(root, commit)


def _resume(root: Path, video: dict | None = None):
    import av
    from lerobot.configs.video import DepthEncoderConfig, RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", "1")  # libsvtav1 prints a banner per video file otherwise
    # lerobot hands FFmpeg's log back to FFmpeg's own printer after each video; at FFmpeg's default level that is a
    # note per mp4 written, which would bury collect's progress bar.
    av.logging.set_libav_level(av.logging.ERROR)
    # An unbounded queue: lerobot's streaming encoder drops frames when its queue is full, and ours come faster than
    # real time. Memory stays bounded by one episode's frames.
    # lerobot's depth encoder (lossless 12-bit HEVC through x265) with x265's own banner and per-file report silenced;
    # x265 prints them itself, past FFmpeg's log level.
    depth_encoder = DepthEncoderConfig(extra_options={"x265-params": "lossless=1:log-level=error"})
    return LeRobotDataset.resume(
        repo_id_for(root),
        root=root,
        streaming_encoding=True,
        encoder_queue_maxsize=1_000_000,
        depth_encoder=depth_encoder,
        rgb_encoder=RGBEncoderConfig(**video) if video else None,
    )


def _commit_checkpoint(root: Path, commit: dict) -> None:
    """Record that lerobot's files now hold every committed episode; the log of frames is then no longer needed."""
    commit["checkpoint"] = {
        "episodes": commit["episodes"],
        "frames": commit["frames"],
        "snapshot": _snapshot(root),
        "last_files": _last_files(root),
    }
    write_commit(root, commit)
    clear_pending(root)


def _create(root: Path, fps: int, features: dict[str, dict], identity: dict, robot_type: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if root.resolve() == Path.cwd().resolve():  # the rename into place below would pull the folder from under us
        raise GenbaError(f"out={root} is the current folder; give the dataset a folder of its own (e.g. out=dataset)")
    staging = root.parent / f".{root.name}.genba-partial"
    if staging.exists():  # left by a run killed while creating; the name is genba's own
        shutil.rmtree(staging)
    root.parent.mkdir(parents=True, exist_ok=True)
    ds = LeRobotDataset.create(repo_id_for(root), fps=fps, features=features, root=staging, robot_type=robot_type)
    ds.finalize()
    write_commit(staging, new_commit(identity, fps, features, _snapshot(staging)))
    if root.is_dir():
        root.rmdir()  # empty (checked by the caller); rename cannot replace a folder everywhere
    os.rename(staging, root)


def _lock(root: Path) -> int:
    """One writer per folder: a second `genba collect` on the same out fails instead of interleaving."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GenbaError(f"out={root} is being written by another genba collect (lock {path})") from None
    return fd


def _snapshot(root: Path) -> dict[str, Any]:
    """The files lerobot rewrites in place, as checkpointed: text, the task list, or None when absent."""
    snap: dict[str, Any] = {}
    for rel in (INFO, STATS):
        path = root / rel
        snap[rel] = path.read_text() if path.exists() else None
    snap[TASKS] = _read_tasks(root) if (root / TASKS).exists() else None
    return snap


def _restore(root: Path, snapshot: dict[str, Any]) -> None:
    """Rewrite what lerobot rewrote in place since the snapshot (only what differs: recovery runs on every open)."""
    for rel, content in snapshot.items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
        elif rel == TASKS:
            if not path.exists() or _read_tasks(root) != content:
                _write_tasks(path, content)
        elif not path.exists() or path.read_text() != content:
            atomic_write(path, content)


def _read_tasks(root: Path) -> list[str]:
    from lerobot.datasets.io_utils import load_tasks

    return [str(t) for t in load_tasks(root).sort_values("task_index").index]


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """lerobot's tasks.parquet: the instructions as the index, in task_index order."""
    import pandas as pd

    df = pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name=keys.TASK))
    atomic_write(path, df.to_parquet)


def _families(root: Path) -> dict[str, list[tuple[tuple[int, int], Path]]]:
    """Files lerobot writes per (chunk, file) index: data, episode metadata, one family per video key."""
    folders = [root / "data", root / "meta" / "episodes"]
    videos = root / "videos"
    if videos.is_dir():
        folders += sorted(p for p in videos.iterdir() if p.is_dir())
    out = {}
    for folder in folders:
        files = []
        for path in folder.glob("chunk-*/file-*.*") if folder.is_dir() else []:
            m = _CHUNKED.search(path.as_posix())
            if m:
                files.append(((int(m.group(1)), int(m.group(2))), path))
        out[folder.relative_to(root).as_posix()] = files
    return out


def _last_files(root: Path) -> dict[str, list[int]]:
    return {family: list(max(i for i, _ in files)) for family, files in _families(root).items() if files}


def _kill_point(stage: str, episode_index: int) -> None:
    """Fault injection for the crash-safety tests: GENBA_KILL_AT=<stage>:<episode> SIGKILLs this process there."""
    if os.environ.get("GENBA_KILL_AT") == f"{stage}:{episode_index}":
        os.kill(os.getpid(), signal.SIGKILL)
