"""`genba collect shards=N` with executor=local: each of `workers` spawned processes simulates and writes whole
seed-disjoint shards (encoding in several processes, not one writer), merged by LeRobot's own aggregate_datasets.
The result equals the one-writer dataset episode for episode; a shard process that dies is retried and resumes; a
driver killed with SIGKILL mid-run is rerun by the same command, which redoes only the missing shards and
episodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_equality import assert_same_dataset
from killed_driver import assert_redid_only_missing, kill_driver_mid_run

from genba.datasets.collect import CollectConfig, run_collect
from genba.datasets.commit import read_all_episode_meta, read_commit
from genba.datasets.distributed import shard_dir, shard_done, shard_root
from genba.datasets.shards import _KEPT, keep_processes

pytestmark = pytest.mark.xdist_group("datasets_sharded")  # one xdist worker: the reference is collected once

# reach with noise=0.1: seed 5 fails, the others succeed, so 6 episodes take 7 attempts: shards [0, 3) and [3, 6),
# then a second round [6, 7) (the same plan as executor=ray; tests/datasets/test_distributed.py).
OPTS = {"task": "reach", "episodes": 6, "noise": 0.1, "image_size": 32, "cameras": ["front"]}
SHARDED = {"workers": 2, "shards": 2}


@pytest.fixture(scope="module")
def one_writer(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_writer") / "reach"
    run_collect(CollectConfig(**OPTS, out=str(out)))
    return out


def _pids(pool) -> set[int]:
    return set(pool._processes)


def test_shards_equal_one_writer(one_writer, tmp_path):
    out = tmp_path / "reach"
    with keep_processes(2):  # the second run below reuses the first one's shard processes (as Ray keeps its workers)
        summary = run_collect(CollectConfig(**OPTS, **SHARDED, out=str(out)))
        assert [m["seed"] for m in read_all_episode_meta(out)] == [0, 1, 2, 3, 4, 6]
        assert_same_dataset(one_writer, out)
        assert not shard_dir(out).exists() and read_commit(out)["checkpoint"]["episodes"] == 6
        pids = _pids(_KEPT[2])
        again = run_collect(CollectConfig(**{**OPTS, "episodes": 8}, **SHARDED, out=str(out)))
        assert _pids(_KEPT[2]) == pids and len(pids) == 2
    assert not _KEPT
    assert summary["executor"] == "local" and summary["complete"] and summary["failed_shards"] == []
    assert [(s["start"], s["stop"], s["status"]) for s in summary["shards"]] == [
        (0, 3, "ran"), (3, 6, "ran"), (6, 7, "ran")
    ]  # fmt: skip
    assert summary["episodes"] == 6 and summary["attempts"] == 7 and summary["merge_seconds"] > 0
    assert "ray_address" not in summary
    # the second run extended it like any genba dataset
    assert again["resumed_from_episode"] == 6 and again["episodes"] == 8
    assert [m["seed"] for m in read_all_episode_meta(out)] == [0, 1, 2, 3, 4, 6, 7, 8]


def test_a_dying_shard_process_is_retried_and_resumes(one_writer, tmp_path, monkeypatch):
    """Each shard process SIGKILLs itself right after committing its second episode (GENBA_KILL_AT): the pool breaks,
    the shards are rerun in new processes, each from its last commit, and the result is unchanged."""
    monkeypatch.setenv("GENBA_KILL_AT", "committed:1")
    out = tmp_path / "reach"
    summary = run_collect(CollectConfig(**OPTS, **SHARDED, out=str(out)))
    assert summary["complete"], summary["failed_shards"]
    first = {(s["start"], s["stop"]): s for s in summary["shards"]}
    assert first[(0, 3)]["resumed_from"] >= 2 or first[(3, 6)]["resumed_from"] >= 2  # a kill happened, resumed
    assert_same_dataset(one_writer, out)


def test_killed_driver_rerun_redoes_only_missing_shards_and_episodes(one_writer, tmp_path):
    out = tmp_path / "reach"
    before, done = kill_driver_mid_run({**OPTS, **SHARDED}, out)  # its shard processes exit on their own
    summary = run_collect(CollectConfig(**OPTS, **SHARDED, out=str(out)))
    assert summary["episodes"] == 6
    assert_redid_only_missing(summary, before, done)
    assert_same_dataset(one_writer, out)
    assert not shard_dir(out).exists()


def test_a_shard_killed_between_its_last_commit_and_its_checkpoint_is_not_done(one_writer, tmp_path):
    """All of the shard's attempts committed, lerobot's files not finalized: the driver must not merge it as it is
    (lerobot could not read it); the rerun replays its log without simulating again."""
    out = tmp_path / "reach"
    root = shard_root(out, 0, 3)
    code = ("from genba.datasets.collect import CollectConfig; from genba.datasets.shards import collect_attempts; "
            f"collect_attempts(CollectConfig(**{OPTS!r}, out={str(out)!r}), {str(root)!r}, 0, 3)")  # fmt: skip
    env = {**os.environ, "GENBA_KILL_AT": "committed:2"}  # seeds 0, 1, 2 all succeed: episode 2 is the last
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    commit = read_commit(root)
    assert commit["attempts"] == 3 and commit["checkpoint"]["episodes"] < 3
    assert shard_done(root, 0, 3) is None

    summary = run_collect(CollectConfig(**OPTS, **SHARDED, out=str(out)))
    first = summary["shards"][0]
    assert (first["start"], first["stop"], first["status"], first["resumed_from"]) == (0, 3, "ran", 3)
    assert_same_dataset(one_writer, out)
