"""`genba merge`: two genba datasets as one by LeRobot's own merge, lerobot loads every episode, genba's records come
along renumbered, lerobot's own progress bars stay quiet; a source with other features, and other bad input, is one
line and leaves no folder."""

import json

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.datasets.collect import CollectConfig, run_collect
from genba.datasets.commit import read_all_episode_meta, read_commit


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    common = dict(task="reach", image_size=32, cameras=["front"])
    run_collect(CollectConfig(**common, episodes=2, seed=0, out=str(root / "a")))
    run_collect(CollectConfig(**common, episodes=3, seed=50, noise=0.2, keep_failed=True, out=str(root / "b")))
    return root


def test_merged_dataset_loads_with_every_episode_and_genbas_records(two, capfd):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from genba.datasets.writer import repo_id_for

    out = two / "ab"
    capfd.readouterr()
    assert main(["merge", f"data=[{two / 'a'},{two / 'b'}]", f"out={out}"]) == 0
    err = capfd.readouterr().err
    assert "Copy data and videos" not in err and "Validate all meta data" not in err, err  # lerobot's bars stay quiet
    summary = json.loads((two / "ab.merge.json").read_text())
    assert (summary["episodes"], summary["genba_records"]) == (5, True)
    ds = LeRobotDataset(repo_id_for(out), root=out)
    parts = [LeRobotDataset(repo_id_for(two / n), root=two / n) for n in ("a", "b")]
    assert ds.meta.total_episodes == 5 and len(ds) == summary["frames"] == sum(len(p) for p in parts)
    last = parts[1][len(parts[1]) - 1]  # the last frame of b is the merged dataset's last
    np.testing.assert_allclose(ds[len(ds) - 1][keys.OBS_STATE].numpy(), last[keys.OBS_STATE].numpy())
    records = read_all_episode_meta(out)
    assert [r["episode_index"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["seed"] for r in records] == [r["seed"] for n in ("a", "b") for r in read_all_episode_meta(two / n)]
    commit = read_commit(out)
    assert [m["seed"] for m in commit["identity"]["merged"]] == [0, 50] and commit["episodes"] == 5
    # its identity is no collect command's: extending it is refused, never mixed
    assert main(["collect", "task=reach", "image_size=32", "cameras=[front]", "episodes=6", f"out={out}"]) == 2


def test_a_source_with_other_features_is_one_line(two, foreign, tmp_path, capsys):
    (tmp_path / "x").mkdir()  # an empty folder the user made for it stays
    # foreign: written by lerobot's own writer, with other features
    assert main(["merge", f"data=[{foreign},{two / 'a'}]", f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot merge" in err, err
    assert (tmp_path / "x").is_dir() and not any((tmp_path / "x").iterdir())


@pytest.mark.parametrize(
    ("data", "out", "message"),
    [("[{a}]", "{t}/x", "give at least two datasets to merge"),
     ("[{a},{a}]", "{t}/x", "data= names a dataset more than once"),
     ("[{a},{t}/none]", "{t}/x", "is not a LeRobotDataset (no meta/info.json)"),
     ("[{a},{b}]", "{a}", "is one of the sources; merge into a new folder"),
     ("[{a},{b}]", "{b}/meta", "exists and is not an empty folder")],
)  # fmt: skip
def test_bad_input_is_one_line(two, tmp_path, capsys, data, out, message):
    fill = {"a": two / "a", "b": two / "b", "t": tmp_path}
    before = sorted(p.name for p in two.iterdir())
    assert main(["merge", f"data={data.format(**fill)}", f"out={out.format(**fill)}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in two.iterdir()) == before


def test_a_source_with_episodes_not_yet_finalized_is_one_line(two, tmp_path, capsys):
    """A genba collect killed after committing episodes but before finalizing them: lerobot's files lack them."""
    import shutil

    from genba.datasets.commit import COMMIT_FILE

    killed = tmp_path / "killed"
    shutil.copytree(two / "a", killed)
    commit = read_commit(killed)
    commit["checkpoint"]["episodes"] = 1  # as a run killed between the second episode's commit and its checkpoint
    (killed / COMMIT_FILE).write_text(json.dumps(commit))
    assert main(["merge", f"data=[{killed},{two / 'b'}]", f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its last genba collect logged 1 episode(s) it did not finalize; run" in err
    assert not (tmp_path / "x").exists() and read_commit(killed) == commit
