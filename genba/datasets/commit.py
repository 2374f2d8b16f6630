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
- `audio/episode_<index>.flac` (collect audio=true): the episode's spoken instruction, mono 16-bit FLAC, listed in
  its episodes.jsonl record as `audio` (`path` relative to the dataset root, `voice`, `lang`, `sample_rate`,
  `seconds`, `noise`, `snr_db`). Written atomically before the record that lists it, so a committed episode's file
  is whole; files of episodes past the commit (a kill between the two) are deleted at the next open.
- `lock`: held (flock) by the one process writing the folder.

An episode is written to the log first (pending frames, then its metadata line) and counts once `commit.json` says
so: that atomic replace is its commit point. No lerobot import here: the viewer and the CLI read these cheaply.

After another tool edits the dataset. lerobot's tools know nothing of `meta/genba/`. Those that write a new folder
(lerobot-edit-dataset delete_episodes, merge, split, remove_feature) leave it behind, in the source or, for an edit
in place, in lerobot's backup `<root>_old`: the result is a plain LeRobotDataset, for which genba's readers return
None as for any dataset genba did not write. Those that copy the whole folder first (recompute_stats,
reencode_videos) keep it, and it stays true: same episodes. But an edit in place that keeps it (modify_tasks,
episodes appended by lerobot's own writer, meta/genba copied by hand into an edited dataset) leaves records that
describe other episodes than lerobot's files hold. So the readers here first check lerobot's files against the
record (`lerobot_mismatch`: episode and frame counts in meta/info.json, then each episode's length and instruction
in meta/episodes/) and, when they disagree, ignore genba's metadata with a one-line warning: no scene is better
than the scene of another episode.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genba.errors import GenbaError
from genba.io import atomic_write, dumps, one_line, remove_stale_tmp

GENBA_META_DIR = "meta/genba"
LEROBOT_INFO = "meta/info.json"
LEROBOT_EPISODES = "meta/episodes"  # lerobot's per-episode metadata: chunk-*/file-*.parquet
COMMIT_FILE = f"{GENBA_META_DIR}/commit.json"
EPISODES_FILE = f"{GENBA_META_DIR}/episodes.jsonl"
PENDING_DIR = f"{GENBA_META_DIR}/pending"
LOCK_FILE = f"{GENBA_META_DIR}/lock"
AUDIO_DIR = f"{GENBA_META_DIR}/audio"
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


# --- episode audio (the spoken instruction) ---


def audio_file(index: int) -> str:
    """Where episode `index`'s audio lives, relative to the dataset root."""
    return f"{AUDIO_DIR}/episode_{index:06d}.flac"


def write_episode_audio(root: Path, index: int, flac: bytes) -> str:
    """The episode's FLAC bytes, durable before its metadata line; returns the path relative to `root`."""
    atomic_write(root / audio_file(index), flac)
    return audio_file(index)


def truncate_episode_audio(root: Path, num_episodes: int) -> None:
    """Delete audio of episodes not committed (a kill after the file, before the commit) and killed atomic writes."""
    folder = root / AUDIO_DIR
    if not folder.is_dir():
        return
    remove_stale_tmp(folder)
    for path in folder.glob("episode_*.flac"):
        if int(path.stem.removeprefix("episode_")) >= num_episodes:
            path.unlink()


def read_episode_audio(root: str | Path, episode_index: int) -> tuple[np.ndarray, int] | None:
    """(float32 (T,) waveform, sample rate) of the episode's spoken instruction; None when it has none (or the
    dataset is not genba's, or was edited by another tool since: see read_all_episode_meta)."""
    record = read_episode_meta(root, episode_index)
    if not record or not record.get("audio"):
        return None
    from genba.speech.audio_io import read_flac

    path = Path(root) / record["audio"]["path"]
    try:
        return read_flac(path)
    except Exception as e:  # soundfile's errors have no common base: a missing or foreign file
        raise GenbaError(f"episode {episode_index}'s audio {path} is unreadable ({one_line(e)})") from None


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
    """Every committed episode's record, in order.

    None for datasets genba did not write, and (with a one-line warning on stderr) for datasets whose lerobot files
    another tool has changed since (see `lerobot_mismatch`): their records would describe other episodes.
    """
    commit = read_commit(root)
    if commit is None:
        return None
    path = Path(root) / EPISODES_FILE
    records = _parse_lines(path.read_text(encoding="utf-8")) if path.exists() else []
    records = _committed(records, commit["episodes"])
    why = lerobot_mismatch(root, commit, records)
    if why is not None:
        print(
            f"genba: warning: ignoring genba's per-episode metadata in {Path(root) / GENBA_META_DIR}: {why}",
            file=sys.stderr,
        )
        return None
    return records


def read_episode_meta(root: str | Path, episode_index: int) -> dict | None:
    """genba's metadata of one episode: {"spec", "physics", "success", "seed", "task", "length", ...}.

    None for a dataset genba did not write (any other LeRobotDataset) or edited by another tool since (with a
    warning, see read_all_episode_meta); GenbaError for an index it does not hold.
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


def lerobot_mismatch(root: str | Path, commit: dict, records: list[dict]) -> str | None:
    """Why lerobot's files at `root` no longer hold the episodes genba's record describes (None when they do).

    records: the committed episode records (read_all_episode_meta's). Checked, cheapest first:
    1. meta/info.json's total_episodes and total_frames. lerobot rewrites it after every episode it takes, so while
       a collect runs (or after one was killed) it may count any committed prefix from the last checkpoint on;
       anything else is an edit (episodes deleted, merged, appended).
    2. Each episode in meta/episodes/ (lerobot's own per-episode metadata, finalized at each checkpoint): the same
       indices as the checkpoint, and per episode the length and instruction genba recorded (catches an edit that
       keeps the counts, e.g. lerobot-edit-dataset modify_tasks).
    """
    root = Path(root)
    try:
        info = json.loads((root / LEROBOT_INFO).read_text(encoding="utf-8"))
        have = (int(info["total_episodes"]), int(info["total_frames"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        return f"{LEROBOT_INFO} is missing or unreadable ({one_line(e)})"
    checkpoint = commit["checkpoint"]["episodes"]
    lengths = [int(r.get("length", -1)) for r in records]
    if not (checkpoint <= have[0] <= len(records) and have[1] == sum(lengths[: have[0]])):
        return (
            f"{LEROBOT_INFO} counts {have[0]} episodes, {have[1]} frames; genba recorded {commit['episodes']} "
            f"episodes, {commit['frames']} frames (edited by another tool, or a killed genba collect not yet rerun)"
        )
    try:
        episodes = _lerobot_episodes(root)
    except Exception as e:  # pyarrow's errors have no common base: a torn, foreign or missing file
        return f"lerobot's episode metadata in {LEROBOT_EPISODES}/ is unreadable ({one_line(e)})"
    if [row["episode_index"] for row in episodes] != list(range(checkpoint)):
        return (
            f"{LEROBOT_EPISODES}/ holds {len(episodes)} episodes; genba checkpointed {checkpoint} "
            "(edited by another tool)"
        )
    return _rows_mismatch(episodes, records)


def edited_since_checkpoint(root: str | Path, commit: dict) -> str | None:
    """Why lerobot's episode metadata no longer holds what genba checkpointed (None when it does).

    Checked before a collect resumes a folder: its recovery restores genba's snapshot of the files lerobot rewrites
    and deletes files newer than the checkpoint, which would silently undo another tool's edit (modify_tasks) or
    drop episodes it appended. Metadata files newer than the checkpoint are a killed checkpoint's (recovery redoes
    them) only when they hold committed episodes; torn ones are skipped.
    """
    root = Path(root)
    checkpoint, committed = commit["checkpoint"]["episodes"], commit["episodes"]
    last = tuple(commit["checkpoint"]["last_files"].get(LEROBOT_EPISODES, (-1, -1)))
    records = _committed(_parse_lines(_read_text(root / EPISODES_FILE)), committed)
    try:
        rows = _lerobot_episodes(root, skip_torn_after=last)
    except Exception as e:  # pyarrow's errors have no common base
        return f"lerobot's episode metadata in {LEROBOT_EPISODES}/ is unreadable ({one_line(e)})"
    indices = [row["episode_index"] for row in rows]
    if indices[:checkpoint] != list(range(checkpoint)) or any(i >= committed for i in indices[checkpoint:]):
        return f"{LEROBOT_EPISODES}/ holds episodes {_span(indices)}; genba checkpointed {checkpoint} of {committed}"
    return _rows_mismatch(rows, records)


def _rows_mismatch(rows: list[dict], records: list[dict]) -> str | None:
    for row, record in zip(rows, records, strict=False):
        task = record.get("task")  # every collect record has it; a writer caller may leave it out
        if row["length"] != record.get("length") or (task is not None and list(row["tasks"] or []) != [task]):
            return (
                f"episode {row['episode_index']} is {row['length']} frames of {row['tasks']} in {LEROBOT_EPISODES}/; "
                f"genba recorded {record.get('length')} frames of {[task]} (edited by another tool)"
            )
    return None


def _span(indices: list[int]) -> str:
    return f"{indices[0]}..{indices[-1]}" if indices else "none"


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _lerobot_episodes(root: Path, skip_torn_after: tuple[int, int] | None = None) -> list[dict]:
    """lerobot's per-episode rows (episode_index, length, tasks) from its metadata files, in episode order. Files
    with a (chunk, file) index above `skip_torn_after` that cannot be read are skipped (a kill tore them)."""
    import re

    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in sorted((root / LEROBOT_EPISODES).glob("chunk-*/file-*.parquet")):
        try:
            rows += pq.read_table(path, columns=["episode_index", "length", "tasks"]).to_pylist()
        except Exception:
            index = tuple(int(n) for n in re.findall(r"\d+", path.relative_to(root / LEROBOT_EPISODES).as_posix()))
            if skip_torn_after is None or index <= skip_torn_after:
                raise
    return sorted(rows, key=lambda row: row["episode_index"])


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
