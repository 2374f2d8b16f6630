"""`genba collect executor=ray` on a real local Ray instance (loopback, 2 CPUs): shards written by genba's writer in
Ray tasks and merged by LeRobot's own aggregate_datasets equal executor=local episode for episode; a failing shard is
reported with its seeds and error while the others are kept, and a rerun redoes only it (also after a SIGKILLed
driver); a merged dataset extends locally; an unreachable address and a merge of datasets with other features are
one line each."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_equality import assert_same_dataset, load
from killed_driver import assert_redid_only_missing, kill_driver_mid_run

from genba.datasets.collect import CollectConfig, run_collect
from genba.datasets.commit import read_all_episode_meta, read_commit
from genba.datasets.distributed import merge_into, shard_dir, shard_root, split_range
from genba.datasets.writer import repo_id_for
from genba.errors import GenbaError

pytestmark = pytest.mark.xdist_group("datasets_ray")  # one xdist worker: one Ray instance for the module

# reach with noise=0.1: seed 5 fails (40 steps, time limit), the others succeed in 3-20 steps. So 6 episodes take
# 7 attempts: a second round of one attempt after the first round's two shards [0, 3) and [3, 6).
OPTS = {"task": "reach", "episodes": 6, "noise": 0.1, "image_size": 32, "cameras": ["front"]}
FAILING_SEED = 5


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("local") / "reach"
    return out, run_collect(CollectConfig(**OPTS, out=str(out)))


@pytest.fixture(scope="module")
def on_ray(ray_cluster, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ray") / "reach"
    return out, run_collect(CollectConfig(**OPTS, out=str(out), executor="ray", shards=2))


def test_split_range():
    assert split_range(0, 7, 2) == [(0, 3), (3, 7)]
    assert split_range(10, 12, 5) == [(10, 11), (11, 12)]
    assert split_range(3, 4, 8) == [(3, 4)]


def test_ray_equals_local(local, on_ray):
    (lout, lsum), (rout, rsum) = local, on_ray
    assert lsum["attempts"] == rsum["attempts"] == 7 and lsum["episodes"] == rsum["episodes"] == 6
    assert rsum["complete"] and rsum["failed_shards"] == [] and rsum["dataset"] == str(rout)
    shards = [(s["start"], s["stop"], s["status"]) for s in rsum["shards"]]
    assert shards == [(0, 3, "ran"), (3, 6, "ran"), (6, 7, "ran")]
    assert [s["seeds"] for s in rsum["shards"]] == [[0, 2], [3, 5], [6, 6]]
    assert rsum["frames"] == lsum["frames"] == sum(s["frames"] for s in rsum["shards"])
    assert rsum["expert_success_rate"] == lsum["expert_success_rate"]
    assert rsum["frames_per_s"] > 0 and rsum["episodes_per_s"] > 0 and rsum["merge_seconds"] > 0
    assert all(s["seconds"] > 0 for s in rsum["shards"])
    seeds = [m["seed"] for m in read_all_episode_meta(rout)]
    assert seeds == [0, 1, 2, 3, 4, 6] and FAILING_SEED not in seeds
    assert_same_dataset(lout, rout)
    assert not shard_dir(rout).exists()  # merged: the shards are gone
    assert read_commit(rout)["checkpoint"]["episodes"] == 6  # a checkpointed genba dataset


def test_merged_dataset_extends_locally(on_ray, tmp_path):
    import shutil

    out = tmp_path / "reach"
    shutil.copytree(on_ray[0], out)
    summary = run_collect(CollectConfig(**{**OPTS, "episodes": 8}, out=str(out)))
    assert summary["resumed_from_episode"] == 6 and summary["episodes"] == 8 and summary["attempts"] == 9
    assert [m["seed"] for m in read_all_episode_meta(out)] == [0, 1, 2, 3, 4, 6, 7, 8]
    assert load(out).num_episodes == 8


def test_failing_shard_reported_others_kept_rerun_redoes_only_it(ray_cluster, local, tmp_path, monkeypatch, capsys):
    out = tmp_path / "reach"
    cfg = {**OPTS, "out": str(out), "executor": "ray", "shards": 2}
    monkeypatch.setenv("GENBA_FAIL_AT", "4")  # attempt 4 raises, in every retry: shard [3, 6) fails
    summary = run_collect(CollectConfig(**cfg))
    assert not summary["complete"] and summary["dataset"] is None and not out.exists()
    (failed,) = summary["failed_shards"]
    assert (failed["start"], failed["stop"], failed["seeds"]) == (3, 6, [3, 5])
    assert "injected failure at attempt 4" in failed["error"]
    err = capsys.readouterr().err
    assert "attempts 3..5 (seeds 3..5) failed" in err and "injected failure at attempt 4" in err
    kept = shard_root(out, 0, 3)
    assert read_commit(kept)["attempts"] == 3  # the other shard is kept, done
    assert read_commit(shard_root(out, 3, 6))["episodes"] == 1  # attempt 3 committed before the failure

    monkeypatch.delenv("GENBA_FAIL_AT")
    again = run_collect(CollectConfig(**cfg))
    assert again["complete"] and again["failed_shards"] == []
    assert [(s["start"], s["stop"], s["status"]) for s in again["shards"]] == [
        (0, 3, "reused"), (3, 6, "ran"), (6, 7, "ran")
    ]  # fmt: skip
    assert again["shards"][1]["resumed_from"] == 1  # attempt 3 was committed: only attempts 4 and 5 are redone
    assert (again["shards"][1]["episodes"], again["shards"][1]["new_episodes"]) == (2, 1)  # seed 4 now, 5 fails
    assert not shard_dir(out).exists()
    assert_same_dataset(local[0], out)


def test_killed_driver_rerun_redoes_only_missing_shards(ray_cluster, local, tmp_path):
    """A driver on this Ray instance, SIGKILLed mid-run: Ray stops its job's tasks; the same command, rerun, redoes
    only the shards not done, each from its last committed episode, and the result is unchanged."""
    out = tmp_path / "reach"
    address = ray_cluster.get_runtime_context().gcs_address
    before, done = kill_driver_mid_run({**OPTS, "executor": "ray", "shards": 2, "ray_address": address}, out)
    summary = run_collect(CollectConfig(**OPTS, out=str(out), executor="ray", shards=2))
    assert_redid_only_missing(summary, before, done)
    assert_same_dataset(local[0], out)


def test_unreachable_address_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "x"
    proc = subprocess.run(
        [sys.executable, "-m", "genba", "collect", "task=reach", "episodes=1", "image_size=32", "cameras=[front]",
         "executor=ray", f"ray_address=127.0.0.1:{port}", f"out={out}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert lines == [f"genba collect: error: cannot reach the Ray cluster at ray_address=127.0.0.1:{port}: "
                     "Connection refused"], proc.stderr[-2000:]  # fmt: skip


def test_merge_of_other_features_is_one_line(local, tmp_path):
    from lerobot.datasets.aggregate import validate_all_metadata
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    two = tmp_path / "two"
    run_collect(CollectConfig(**{**OPTS, "episodes": 1, "cameras": ["front", "wrist"]}, out=str(two)))
    with pytest.raises(GenbaError) as e:
        merge_into([local[0], two], tmp_path / "merged")
    assert str(e.value) == f"cannot merge {local[0]} and {two}: feature observation.images.wrist is only in {two}"
    assert not (tmp_path / "merged").exists()
    with pytest.raises(ValueError, match="Same features"):  # LeRobot's own merge refuses them too (in one huge line)
        validate_all_metadata([LeRobotDatasetMetadata(repo_id_for(r), root=r) for r in (local[0], two)])


def test_plain_merge_of_two_genba_datasets(local, tmp_path):
    """merge_into with no commit record is a plain LeRobot merge (no genba metadata): lerobot's files only."""
    merged = tmp_path / "merged"
    merge_into([local[0], local[0]], merged)
    ds = load(merged)
    assert ds.num_episodes == 12 and read_commit(merged) is None
    assert json.loads((merged / "meta/info.json").read_text())["total_frames"] == 2 * load(local[0]).num_frames
