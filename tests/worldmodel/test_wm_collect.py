"""`genba collect backend=worldmodel worldmodel=<run>`: imagined episodes of the expert, from the MuJoCo reset of
each seed, written by the same crash-safe writer as a LeRobotDataset v3 that lerobot loads, marked synthetic in
genba's per-episode records and in the dataset's identity; bad input is one line before any episode."""

import numpy as np
import pytest

from genba import keys
from genba.datasets.collect import CollectConfig, run_collect
from genba.datasets.commit import read_all_episode_meta, read_commit

pytestmark = pytest.mark.xdist_group("worldmodel")


def test_imagined_episodes_are_a_lerobot_dataset_marked_synthetic(reach_wm_run, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from genba.datasets.writer import repo_id_for

    run = str(reach_wm_run["run"])
    common = dict(task="reach", episodes=2, image_size=64, keep_failed=True, seed=100)
    dream = tmp_path / "imagined"
    summary = run_collect(CollectConfig(**common, out=str(dream), backend="worldmodel", worldmodel=run))
    real = tmp_path / "real"
    run_collect(CollectConfig(**common, out=str(real)))
    assert summary["episodes"] == 2
    records = read_all_episode_meta(dream)
    assert [r["seed"] for r in records] == [100, 101]
    assert all(r["synthetic"] is True and r["worldmodel"] == run for r in records)
    assert not any("synthetic" in r for r in read_all_episode_meta(real))
    identity = read_commit(dream)["identity"]
    assert (identity["backend"], identity["worldmodel"]) == ("worldmodel", run)
    assert "backend" not in read_commit(real)["identity"]  # datasets from before the option resume unchanged
    # the same scenes (MuJoCo resets of the same seeds); an untrained head ends an episode or the time limit does
    assert [r["task"] for r in records] == [r["task"] for r in read_all_episode_meta(real)]
    for r in records:
        assert r["success"] or (r["length"], r["truncation_reason"]) == (40, "time_limit")
    ds = LeRobotDataset(repo_id_for(dream), root=dream)
    assert ds.meta.total_episodes == 2 and len(ds) == sum(r["length"] for r in records)
    ref = LeRobotDataset(repo_id_for(real), root=real)
    assert set(ds.meta.features) == set(ref.meta.features)
    first, first_real = ds[0], ref[0]
    # the first frame is the real reset's (up to video coding); later frames are the model's
    assert np.allclose(first[keys.OBS_STATE].numpy(), first_real[keys.OBS_STATE].numpy())
    image = keys.image_key("front")
    assert np.abs(first[image].numpy() - first_real[image].numpy()).mean() < 0.05
    env_state = ds.hf_dataset.with_format("numpy")[keys.OBS_ENV_STATE][: records[0]["length"]]
    assert np.array_equal(env_state, np.repeat(env_state[:1], len(env_state), axis=0))  # the reset's, held
    # the same folder with MuJoCo episodes is another dataset: refused, never mixed
    from genba.cli import main

    assert main(["collect", "task=reach", "episodes=3", "image_size=64", "keep_failed=true", "seed=100",
                 f"out={dream}"]) == 2  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [("backend=worldmodel", "backend=worldmodel needs worldmodel=<run>, and worldmodel= needs backend=worldmodel"),
     ("backend=dream", "backend='dream' is not one of mujoco, worldmodel"),
     ("executor=ray", "backend=worldmodel needs executor=local"),
     ("judge=oracle", "judge='oracle': head or sim, and only with backend=worldmodel"),
     ("task=pick_place judge=sim", "judge=sim: task pick_place's success depends on objects the arm moves")],
)  # fmt: skip
def test_bad_input_is_one_line(override, message, reach_wm_run, capsys, tmp_path):
    from genba.cli import main

    argv = ["collect", "task=reach", f"out={tmp_path / 'x'}", "backend=worldmodel", f"worldmodel={reach_wm_run['run']}"]
    if override == "backend=worldmodel":
        argv = ["collect", "task=reach", f"out={tmp_path / 'x'}", override]
    else:
        argv += override.split()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_run_without_a_success_head_is_refused_before_any_episode(headless_wm_run, capsys, tmp_path):
    from genba.cli import main

    out = tmp_path / "x"
    assert main(["collect", "task=reach", f"out={out}", "backend=worldmodel", f"worldmodel={headless_wm_run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no success head" in err, err
    assert not out.exists()


def test_judge_sim_collects_with_a_run_without_a_success_head(headless_wm_run, tmp_path, capsys):
    from genba.cli import main

    out = tmp_path / "sim"
    summary = run_collect(CollectConfig(task="reach", episodes=2, image_size=64, keep_failed=True, seed=100,
                                        out=str(out), backend="worldmodel", worldmodel=str(headless_wm_run),
                                        judge="sim"))  # fmt: skip
    assert summary["episodes"] == 2 and read_commit(out)["identity"]["judge"] == "sim"
    assert all(r["synthetic"] for r in read_all_episode_meta(out))
    capsys.readouterr()
    assert main(["collect", "task=reach", f"out={tmp_path / 'real'}", "judge=sim"]) == 2  # MuJoCo judges itself
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only with backend=worldmodel" in err, err
