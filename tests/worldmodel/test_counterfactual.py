"""Controllability against MuJoCo (genba.worldmodel.counterfactual): which datasets can be replayed, the replay of an
episode's own actions reproduces it, other actions lead elsewhere, and `genba eval-worldmodel` reports the check."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from genba.errors import GenbaError
from genba.viz.data import read_episode
from genba.worldmodel.counterfactual import Branches, sim_source
from genba.worldmodel.evaluate import EvalWorldModelConfig, run_eval_worldmodel
from genba.worldmodel.metrics import psnr_of_mse


def test_only_datasets_genba_collected_from_mujoco_can_be_replayed(tiny_worldmodel_run, reacher_dataset):
    source, why = sim_source(tiny_worldmodel_run["data"])
    assert why == "" and source["task"] == "pick_place" and sorted(source["seeds"]) == [0, 1, 2, 3]
    assert source["env"]["image_size"] == 64 and source["env"]["cameras"] == ["front", "wrist"]
    source, why = sim_source(reacher_dataset)  # lerobot's writer, gymnasium's Reacher: no simulator genba knows
    assert source is None and "not written by genba collect" in why


def test_replaying_the_recorded_actions_reproduces_the_episode_and_other_actions_do_not(tiny_worldmodel_run):
    data = tiny_worldmodel_run["data"]
    source, _ = sim_source(data)
    episode = read_episode(data, 1)
    n, k = 3, 5  # branch after frame 3, then 5 steps
    sim = Branches(source)
    run = sim.branch(1, episode.action[:n], episode.action[n : n + k])
    assert run.state.shape == (k, episode.state.shape[1]) and run.frames["front"].shape == (k, 64, 64, 3)
    # the same scene and physics from the episode's seed: the joints exactly, the frames up to video coding
    np.testing.assert_allclose(run.start_state, episode.state[n], atol=1e-5)
    np.testing.assert_allclose(run.state, episode.state[n + 1 : n + 1 + k], atol=1e-5)
    for cam, v in run.frames.items():
        for got, want in ((v, episode.images[cam][n + 1 : n + 1 + k]), (run.start_frames[cam], episode.images[cam][n])):
            err = float((((got.astype(np.float64) - want) / 255.0) ** 2).mean())
            assert psnr_of_mse(err) > 25, cam
    other = episode.action[n : n + k] + np.array([0.3, -0.3, 0.3, 0.0, 0.0, 0.0], dtype=np.float32)
    moved = sim.branch(1, episode.action[:n], other)
    np.testing.assert_array_equal(moved.start_state, run.start_state)  # the same branch point
    assert np.abs(moved.state[-1] - run.state[-1]).max() > 0.05  # other actions, other joints
    again = sim.branch(1, episode.action[:n], episode.action[n : n + k])  # and the env is reset each time
    for cam in run.frames:
        np.testing.assert_array_equal(again.frames[cam], run.frames[cam])
    sim.close()


def test_eval_worldmodel_scores_the_other_actions_against_mujoco(tiny_worldmodel_run, tmp_path: Path):
    run = tiny_worldmodel_run["run"]
    cfg = EvalWorldModelConfig(run=str(run), out=str(tmp_path / "e.json"), horizons=[1, 8], windows_per_episode=3,
                               threads=1, rrd_windows=0)  # fmt: skip
    summary = run_eval_worldmodel(cfg)
    cf = summary["counterfactual@8"]
    assert summary["counterfactual_skipped"] is None and cf is not None
    for key in ("psnr", "copy_last_psnr", "psnr_as_taken", "psnr_to_taken", "truth_psnr"):
        assert 0 < cf[key] <= 100 and set(cf["per_camera"]) == {"front", "wrist"}
    assert cf["dpsnr"] == pytest.approx(cf["psnr"] - cf["psnr_as_taken"]) and math.isfinite(cf["dstate"])
    assert cf["replay_psnr"] > 25 and cf["replay_state_mae"] < 1e-4  # the replay reaches the dataset's frame
    assert cf["state_mae"] >= 0 and cf["copy_last_state_mae"] > 0
    # psnr_to_taken is the controllability rollout against the real future: the figure controllability_dpsnr uses
    other = np.mean(
        [psnr_of_mse(np.mean(summary["per_window"]["metrics"][f"control/{c}/mse"])) for c in cf["per_camera"]]
    )
    assert cf["psnr_to_taken"] == pytest.approx(other)
    assert math.isfinite(cf["per_camera"]["wrist"]["truth_psnr"])
    off = run_eval_worldmodel(dataclasses.replace(cfg, counterfactual="off"))
    assert off["counterfactual@8"] is None and off["counterfactual_skipped"] is None
    assert off["psnr@8"] == summary["psnr@8"]  # the check changes no other figure


def test_a_dataset_that_cannot_be_replayed_is_skipped_or_one_line(tiny_worldmodel_run, reacher_dataset, tmp_path):
    from genba.worldmodel.train_command import TrainWorldModelConfig, run_train_worldmodel

    run = tmp_path / "run"
    run_train_worldmodel(TrainWorldModelConfig(data=str(reacher_dataset), out=str(run), steps=1, batch_size=2,
                                               val_fraction=0.34, progress=False))  # fmt: skip
    base = dict(run=str(run), out=str(tmp_path / "e.json"), horizons=[1, 4], threads=1, rrd_windows=0)
    summary = run_eval_worldmodel(EvalWorldModelConfig(**base))
    assert summary["counterfactual@4"] is None and "not written by genba collect" in summary["counterfactual_skipped"]
    with pytest.raises(GenbaError, match=r"counterfactual=on, but .* cannot be replayed in MuJoCo") as e:
        run_eval_worldmodel(EvalWorldModelConfig(**base, counterfactual="on"))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="counterfactual='maybe'"):
        EvalWorldModelConfig(**base, counterfactual="maybe")
