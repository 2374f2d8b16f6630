"""genba's own per-episode metadata beside a LeRobotDataset v3, and the commit record that makes writing crash-safe.

Both live under `<root>/meta/genba/`, which lerobot ignores (it only globs `meta/episodes/*/*.parquet`):

- `episodes.jsonl`: one JSON object per committed episode, in episode order: `episode_index`, `seed`, `attempt`,
  `success`, `length`, `task` (the instruction), `spec` (the env's `episode_spec()`: everything needed to rebuild the
  scene with `genba.sim.replay.Replayer`), `physics` (the sampled physical parameters), `truncation_reason`, `noise`.
- `commit.json`: the last committed state, replaced atomically after each episode (see genba/datasets/writer.py).
  Only its first `episodes` lines of `episodes.jsonl` count: a kill between appending a line and committing leaves
  an extra line that the next run (and every reader here) ignores.

Standard library only: the viewer and the CLI read these without importing lerobot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from genba.errors import GenbaError

GENBA_META_DIR = "meta/genba"
EPISODES_FILE = f"{GENBA_META_DIR}/episodes.jsonl"
COMMIT_FILE = f"{GENBA_META_DIR}/commit.json"
COMMIT_VERSION = 1


def read_commit(root: str | Path) -> dict | None:
    """The commit record, or None when `root` is not a dataset written by `genba collect`."""
    path = Path(root) / COMMIT_FILE
    if not path.is_file():
        return None
    try:
        commit = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:  # atomic replace makes this a foreign or hand-edited file
        raise GenbaError(f"{path} is unreadable ({e}); it is not a commit record genba wrote") from None
    if not isinstance(commit, dict) or commit.get("version") != COMMIT_VERSION:
        raise GenbaError(f"{path} has an unknown format (expected version {COMMIT_VERSION})")
    return commit


def write_commit(root: str | Path, commit: dict) -> None:
    """Atomic and durable: a reader (or the next run after a kill) sees the old record or the new one, never half."""
    write_text_atomic(Path(root) / COMMIT_FILE, json.dumps(commit, ensure_ascii=False, indent=1) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_episode_meta(root: str | Path, record: dict) -> None:
    """One line per episode; written before the commit that makes it count."""
    path = Path(root) / EPISODES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, default=_json_default)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_episode_meta(root: str | Path, num_episodes: int) -> None:
    """Keep exactly the first `num_episodes` complete lines (drops a torn or uncommitted tail after a kill)."""
    path = Path(root) / EPISODES_FILE
    if not path.exists():
        return
    records = _parse_lines(path.read_text(encoding="utf-8"))
    kept = [r for r in records if r.get("episode_index", -1) < num_episodes][:num_episodes]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    if text != path.read_text(encoding="utf-8"):
        write_text_atomic(path, text)


def read_all_episode_meta(root: str | Path) -> list[dict] | None:
    """Every committed episode's record, in order; None for datasets genba did not write."""
    root = Path(root)
    path = root / EPISODES_FILE
    commit = read_commit(root)
    if commit is None:
        return None
    records = _parse_lines(path.read_text(encoding="utf-8")) if path.exists() else []
    return [r for r in records if r.get("episode_index", -1) < commit["episodes"]][: commit["episodes"]]


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


def _parse_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill is the last one; nothing after it counts
            break
        records.append(record)
    return records


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays inside specs
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
