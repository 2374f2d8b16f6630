"""genba's crash-safety record beside a LeRobotDataset v3, and its readers: the commit record, the write-ahead log
of episodes not yet in lerobot's files, and genba's per-episode metadata.

Everything lives under `<root>/meta/genba/`, which lerobot ignores (it only globs `meta/episodes/*/*.parquet`):

- `commit.json`: the last committed state, replaced atomically (and durably) after each episode: `identity` (the
  options that define the dataset's content), `fps`, `features` (dtype and shape per feature), the counts
  `episodes`, `frames`, `attempts`, `successes`, and `checkpoint`: the state lerobot's own files were last
  finalized at (`episodes`, `frames`, a `snapshot` of the files lerobot rewrites in place and the last
  (chunk, file) index of every file family, `last_files`). genba/datasets/writer.py explains how it is used.
- `pending/<episode index>.npz`: the frames and instruction of each committed episode since the checkpoint, the
  log that recovery replays through lerobot; deleted at each checkpoint.
- `episodes.jsonl`: one JSON object per committed episode, in episode order: `episode_index`, `seed`, `attempt`,
  `success`, `length`, `task` (the instruction), `spec` (the env's `episode_spec()`: everything needed to rebuild
  the scene with `genba.sim.replay.Replayer`), `physics` (the sampled physical parameters), `truncation_reason`,
  `noise`. Only its first `episodes` lines (per commit.json) count: a kill between appending a line and committing
  leaves an extra line that the next run (and every reader here) ignores.
- `lock`: held (flock) by the one process writing the folder.

An episode is written to the log first (pending frames, then its metadata line) and counts once `commit.json` says
so: that atomic replace is its commit point. No lerobot import here: the viewer and the CLI read these cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genba.errors import GenbaError
from genba.io import atomic_write, dumps

GENBA_META_DIR = "meta/genba"
COMMIT_FILE = f"{GENBA_META_DIR}/commit.json"
EPISODES_FILE = f"{GENBA_META_DIR}/episodes.jsonl"
PENDING_DIR = f"{GENBA_META_DIR}/pending"
LOCK_FILE = f"{GENBA_META_DIR}/lock"
COMMIT_VERSION = 1
_TASK_KEY = "__task__"  # the instruction, stored beside the frames in a pending file


# --- the commit record ---


def new_commit(identity: dict, fps: int, features: dict[str, dict], snapshot: dict[str, Any]) -> dict:
    """The record of a dataset with no episode yet, checkpointed at lerobot's freshly created files (`snapshot`)."""
    return {
        "version": COMMIT_VERSION,
        "identity": _jsonable(identity),
        "fps": fps,
        "features": _feature_shapes(features),
        "episodes": 0,
        "frames": 0,
        "attempts": 0,
        "successes": 0,
        "checkpoint": {"episodes": 0, "frames": 0, "snapshot": snapshot, "last_files": {}},
    }


def read_commit(root: str | Path) -> dict | None:
    """The commit record, or None when `root` is not a dataset written by `genba collect`."""
    path = Path(root) / COMMIT_FILE
    if not path.is_file():
        return None
    try:
        commit = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:  # atomic replace: a foreign or hand-edited file
        raise GenbaError(f"{path} is unreadable ({e}); it is not a commit record genba wrote") from None
    if not isinstance(commit, dict) or commit.get("version") != COMMIT_VERSION:
        raise GenbaError(f"{path} has an unknown format (expected version {COMMIT_VERSION})")
    return commit


def write_commit(root: str | Path, commit: dict) -> None:
    """Atomic and durable: a reader (or the next run after a kill) sees the old record or the new one, never half."""
    atomic_write(Path(root) / COMMIT_FILE, dumps(commit, indent=1))


def check_identity(root: Path, commit: dict, identity: dict, fps: int, features: dict[str, dict]) -> None:
    """Reopening a dataset with other content options is an error, never a mix of two datasets in one folder."""
    old, new = commit["identity"], _jsonable(identity)
    diff = [
        f"{k}={old.get(k)!r} (asked {new.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    ]
    if commit["fps"] != fps:
        diff.append(f"fps={commit['fps']} (asked {fps})")
    if not diff and commit["features"] != _feature_shapes(features):  # same options, another genba version
        diff.append("other features (shapes of state, environment state or images)")
    if diff:
        raise GenbaError(
            f"out={root} holds a dataset collected with {', '.join(diff)}; "
            "rerun with its options to continue it, or choose another out="
        )


def _jsonable(value: Any) -> Any:
    """As it reads back from commit.json (tuples as lists, numpy values as python ones), so that it compares equal."""
    return json.loads(dumps(value, indent=None))


def _feature_shapes(features: dict[str, dict]) -> dict:
    return _jsonable({k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in features.items()})


# --- the write-ahead log of frames ---


def write_pending(root: Path, index: int, frames: dict[str, np.ndarray], task: str) -> None:
    """Log an episode's frames and instruction (uncompressed: fast, and deleted at the next checkpoint)."""
    arrays = {**frames, _TASK_KEY: np.array(task)}
    atomic_write(root / PENDING_DIR / f"{index:06d}.npz", lambda f: np.savez(f, **arrays))


def read_pending(root: Path, index: int) -> tuple[dict[str, np.ndarray], str]:
    """(frames, instruction) of a logged episode."""
    with np.load(root / PENDING_DIR / f"{index:06d}.npz") as log:
        return {k: log[k] for k in log.files if k != _TASK_KEY}, str(log[_TASK_KEY])


def keep_pending(root: Path, logged: Iterable[int]) -> None:
    """Delete every pending file but those of the episodes `logged` (uncommitted, torn, or already checkpointed)."""
    folder, keep = root / PENDING_DIR, {f"{i:06d}.npz" for i in logged}
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name not in keep:
            path.unlink()


def clear_pending(root: Path) -> None:
    """After a checkpoint: every logged episode is in lerobot's files now."""
    shutil.rmtree(root / PENDING_DIR, ignore_errors=True)


# --- genba's per-episode metadata ---


def append_episode_meta(root: str | Path, record: dict) -> None:
    """One line per episode, durable before the commit that makes it count."""
    path = Path(root) / EPISODES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps(record, indent=None))
        f.flush()
        os.fsync(f.fileno())


def truncate_episode_meta(root: str | Path, num_episodes: int) -> None:
    """Keep exactly the first `num_episodes` complete lines (drops a torn or uncommitted tail after a kill)."""
    path = Path(root) / EPISODES_FILE
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    kept = "".join(dumps(r, indent=None) for r in _committed(_parse_lines(text), num_episodes))
    if kept != text:
        atomic_write(path, kept)


def read_all_episode_meta(root: str | Path) -> list[dict] | None:
    """Every committed episode's record, in order; None for datasets genba did not write."""
    commit = read_commit(root)
    if commit is None:
        return None
    path = Path(root) / EPISODES_FILE
    records = _parse_lines(path.read_text(encoding="utf-8")) if path.exists() else []
    return _committed(records, commit["episodes"])


def read_episode_meta(root: str | Path, episode_index: int) -> dict | None:
    """genba's metadata of one episode: {"spec", "physics", "success", "seed", "task", "length", ...}.

    None for a dataset genba did not write (any other LeRobotDataset); GenbaError for an index it does not hold.
    """
    records = read_all_episode_meta(root)
    if records is None:
        return None
    for record in records:
        if record["episode_index"] == episode_index:
            return record
    raise GenbaError(
        f"episode={episode_index} is not in {root} (it holds episodes 0..{len(records) - 1})"
        if records
        else f"episode={episode_index} is not in {root} (it holds no episodes yet)"
    )


def _committed(records: list[dict], num_episodes: int) -> list[dict]:
    return [r for r in records if r.get("episode_index", -1) < num_episodes][:num_episodes]


def _parse_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill is the last one; nothing after it counts
            break
        records.append(record)
    return records
