"""The crash-safe writer on synthetic episodes (no simulator): commits, rollback after SIGKILL at every stage of an
episode's write, identity checks. Every dataset is read back with lerobot's own LeRobotDataset."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from genba.datasets.commit import read_episode_meta
from genba.datasets.writer import open_writer, repo_id_for
from genba.errors import GenbaError

S = 64  # small and fast; libsvtav1 (lerobot's AV1 encoder) dies of SIGFPE below 25 pixels wide
TASKS = ["put the red cube in the blue bin", "赤いキューブを青い箱に入れて"]
FEATURES = {
    "observation.images.front": {"dtype": "video", "shape": (S, S, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (6,), "names": list("abcdef")},
    "action": {"dtype": "float32", "shape": (6,), "names": list("abcdef")},
}


def synthetic_episode(i: int) -> dict[str, np.ndarray]:
    """Deterministic from i, so a resumed run writes the same episode again. Flat images: codec-friendly."""
    length = 6 + i % 3
    t = np.arange(length, dtype=np.float32)[:, None]
    state = i * 100 + t + np.arange(6, dtype=np.float32) / 10  # (T, 6)
    image = np.zeros((length, S, S, 3), np.uint8)
    image[..., 0] = (40 * i) % 250
    image[..., 1] = (20 * t[:, 0, None, None]).astype(np.uint8)
    image[:, : S // 2, :, 2] = 200
    return {"observation.images.front": image, "observation.state": state, "action": -state}


def write_all(root: Path, n: int, checkpoint_every: int = 25) -> dict:
    writer = open_writer(root, 10, FEATURES, {"task": "synthetic"}, checkpoint_every=checkpoint_every)
    try:
        for i in range(writer.episodes, n):
            writer.write_episode(synthetic_episode(i), TASKS[i % 2], {"seed": i, "success": True})
        return dict(writer.commit)
    finally:
        writer.close()


def load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(repo_id_for(root), root=root)


def check_dataset(root: Path, n: int) -> None:
    """Every episode present once, values exact, every video frame decodes close to what was written."""
    ds = load(root)
    assert ds.num_episodes == n
    expected = [synthetic_episode(i) for i in range(n)]
    assert len(ds) == sum(len(e["action"]) for e in expected)
    k = 0
    for i, ep in enumerate(expected):
        for t in range(len(ep["action"])):
            item = ds[k]
            assert int(item["episode_index"]) == i and int(item["frame_index"]) == t
            np.testing.assert_array_equal(item["observation.state"].numpy(), ep["observation.state"][t])
            np.testing.assert_array_equal(item["action"].numpy(), ep["action"][t])
            assert item["task"] == TASKS[i % 2]
            image = item["observation.images.front"].numpy().transpose(1, 2, 0) * 255  # (C,H,W) [0,1] -> HWC
            assert np.abs(image - ep["observation.images.front"][t]).mean() < 6.0
            k += 1
    assert [read_episode_meta(root, i)["seed"] for i in range(n)] == list(range(n))
    assert not [p.name for p in root.iterdir() if p.name.startswith("tmp") or p.name == "images"]


def test_write_load_and_metadata(tmp_path):
    root = tmp_path / "ds"
    commit = write_all(root, 3)
    assert (commit["episodes"], commit["attempts"], commit["successes"]) == (3, 3, 3)
    check_dataset(root, 3)
    for family in ("data", "meta/episodes", "videos/observation.images.front"):  # one segment: one file each
        assert len(list((root / family).glob("*/*.*"))) == 1, family
    assert read_episode_meta(root, 1)["length"] == len(synthetic_episode(1)["action"])
    with pytest.raises(GenbaError, match="episode=7"):
        read_episode_meta(root, 7)
    # reopening a complete dataset writes nothing and keeps it loadable
    assert write_all(root, 3)["episodes"] == 3
    check_dataset(root, 3)


def test_not_ours_and_identity(tmp_path):
    root = tmp_path / "ds"
    write_all(root, 1)
    with pytest.raises(GenbaError, match=r"task='synthetic' \(asked 'other'\)"):
        open_writer(root, 10, FEATURES, {"task": "other"})
    with pytest.raises(GenbaError, match="fps=10 \\(asked 30\\)"):
        open_writer(root, 30, FEATURES, {"task": "synthetic"})
    # a second writer on the same folder while the first holds it
    first = open_writer(root, 10, FEATURES, {"task": "synthetic"})
    with pytest.raises(GenbaError, match="another genba collect"):
        open_writer(root, 10, FEATURES, {"task": "synthetic"})
    first.close()
    # a LeRobotDataset genba did not write: refused, and read_episode_meta says None
    (root / "meta" / "genba" / "commit.json").rename(tmp_path / "commit.json")
    with pytest.raises(GenbaError, match="not written by genba collect"):
        open_writer(root, 10, FEATURES, {"task": "synthetic"})
    assert read_episode_meta(root, 0) is None
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(GenbaError, match="not empty"):
        open_writer(other, 10, FEATURES, {"task": "synthetic"})
    assert (other / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(GenbaError, match="is a file"):
        open_writer(tmp_path / "file", 10, FEATURES, {"task": "synthetic"})
    empty = tmp_path / "empty"
    empty.mkdir()
    write_all(empty, 1)
    assert load(empty).num_episodes == 1


def test_recovery_drops_temporaries_of_killed_atomic_writes(tmp_path):
    root = tmp_path / "ds"
    write_all(root, 1)
    left = [root / "meta/genba/.commit.json.99999.tmp", root / "meta/.info.json.99999.tmp"]
    left.append(root / "meta/genba/pending/.000001.npz.99999.tmp")
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    assert write_all(root, 2)["episodes"] == 2
    assert [p for p in left if p.exists()] == []
    check_dataset(root, 2)


def run_writer(root: Path, n: int, kill_at: str | None) -> int | None:
    """write_all in a child process; its exit code (-9: SIGKILL). Children fork from a single-threaded forkserver
    that has lerobot imported already: seconds per child instead of a fresh interpreter's import time."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lerobot.datasets.lerobot_dataset", "genba.datasets.writer"])
    child = ctx.Process(target=_child, args=(root, n, kill_at))
    child.start()
    child.join(timeout=120)
    return child.exitcode


def _child(root: Path, n: int, kill_at: str | None) -> None:
    os.environ.pop("GENBA_KILL_AT", None)
    if kill_at:
        os.environ["GENBA_KILL_AT"] = kill_at
    write_all(root, n, checkpoint_every=2)


def committed(root: Path) -> int:
    return json.loads((root / "meta/genba/commit.json").read_text())["episodes"]


def test_sigkill_at_every_stage_then_resume(tmp_path):
    """Real SIGKILLs at each stage of writing, checkpointing and recovering (segments of 2 episodes); each rerun
    recovers and goes on; the last one finishes a dataset lerobot loads, every episode once."""
    root = tmp_path / "ds"
    n = 8
    for kill_at, committed_after in [
        ("save_episode:0", 0),  # inside lerobot's writer, before the first commit
        ("add_frame:1", 1),  # episode 0 committed in the log only; lerobot's segment files are open
        ("checkpoint:3", 3),  # episodes 1, 2 finalized by lerobot but not checkpointed
        ("replay:2", 3),  # inside recovery, replaying the log
        ("recover:3", 3),  # inside recovery, after the rollback
        ("log:3", 3),  # the log file of episode 3 written, its metadata line not
        ("episode_meta:3", 3),  # its metadata line written, the commit not
        ("committed:5", 6),  # episode 5 committed in the log, not checkpointed
    ]:
        assert run_writer(root, n, kill_at) == -signal.SIGKILL, kill_at
        assert committed(root) == committed_after, kill_at
    assert run_writer(root, n, None) == 0
    check_dataset(root, n)
    lines = (root / "meta/genba/episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["episode_index"] for line in lines] == list(range(n))
    assert not (root / "meta/genba/pending").exists()
    assert len(list((root / "data").glob("*/*.parquet"))) < n  # segments, not one file per episode
