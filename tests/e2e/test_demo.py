"""The whole pipeline as `make demo` runs it, on a small preset: collect expert episodes in MuJoCo, load them with
lerobot's own LeRobotDataset, write a .rrd of episode 0 and read it back with rerun's own reader, evaluate the
expert, train a world model briefly and evaluate it on the held-out episode, with its .rrd read back, then train a
VLA from the world model's backbone and evaluate it in MuJoCo with its grounding gap, and again inside the world
model on the same seeds."""

import json

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.viz.readback import read_rrd, verify_rrd

pytestmark = pytest.mark.xdist_group("e2e")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    argv = ["demo", f"out={out}", "episodes=2", "image_size=48", "workers=1", "lang=ja", "eval_episodes=3",
            "worldmodel_steps=2", "policy_steps=2", "policy_episodes=2", "threads=1"]  # fmt: skip
    assert main(argv) == 0
    return out, json.loads((out / "summary.json").read_text()), argv


def test_demo_dataset_loads_with_lerobot(demo):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out, summary, _ = demo
    assert summary["collect"]["episodes"] == 2
    ds = LeRobotDataset(repo_id="local/demo", root=out / "dataset")
    assert ds.num_episodes == 2
    assert ds.num_frames == summary["collect"]["frames"]
    first = ds[0]
    for camera in keys.CAMERAS:
        assert tuple(first[keys.image_key(camera)].shape) == (3, 48, 48)
    assert tuple(first[keys.OBS_STATE].shape) == (6,)
    assert tuple(first[keys.ACTION].shape) == (6,)
    assert any("\u3040" <= ch <= "\u30ff" for ch in first[keys.TASK])  # a Japanese instruction (kana)
    assert ds.meta.features[keys.OBS_STATE]["names"] == list(keys.JOINTS)


def test_demo_rrd_reads_back_with_rerun(demo):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out, summary, _ = demo
    rrd_path = out / "episode_0.rrd"
    assert summary["rrd"] == str(rrd_path)
    verify_rrd(rrd_path)
    rrd = read_rrd(rrd_path)

    ds = LeRobotDataset(repo_id="local/demo", root=out / "dataset", episodes=[0])
    states = np.stack([ds[i][keys.OBS_STATE].numpy() for i in range(ds.num_frames)])
    for j, joint in enumerate(keys.JOINTS):
        frames, values = rrd.series(f"state/{joint}", "Scalars:scalars")
        assert frames == list(range(ds.num_frames))
        np.testing.assert_allclose(np.ravel(values), states[:, j], rtol=1e-6, atol=1e-7)
    for camera in keys.CAMERAS:
        frames, _ = rrd.series(f"cameras/{camera}", "EncodedImage:blob")
        assert frames == list(range(ds.num_frames))
    assert any(e.startswith("world/") for e in rrd.entities()), "the arm in 3D is missing"
    assert any("points" in e for e in rrd.entities()), "the depth point cloud is missing"


def test_demo_runs_again_without_redoing_work(demo):
    out, summary, argv = demo
    assert main(argv) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["collect"]["episodes"] == summary["collect"]["episodes"]
    assert again["collect"]["frames"] == summary["collect"]["frames"]
    assert again["train_worldmodel"] == summary["train_worldmodel"]  # the finished run is reused, not retrained
    assert again["eval_worldmodel"]["psnr@8"] == summary["eval_worldmodel"]["psnr@8"]
    assert again["train_policy"] == summary["train_policy"]


def test_demo_trains_and_evaluates_a_world_model_with_predictions_beside_reality(demo):
    out, summary, _ = demo
    trained, wm = summary["train_worldmodel"], summary["eval_worldmodel"]
    assert trained["steps"] == 2 and trained["kind"] == "worldmodel"
    assert (out / "worldmodel" / "last" / "model.safetensors").is_file()
    assert wm["episodes"] == 1 and wm["context_frames"] == 2
    for h in (1, 4, 8, 16):
        assert 0 < wm[f"psnr@{h}"] <= 100 and wm["copy_last"][f"psnr@{h}"] > 0
    assert set(wm["per_camera"]) == set(keys.CAMERAS)
    verify_rrd(wm["rrd"])
    rrd = read_rrd(wm["rrd"])
    for camera in keys.CAMERAS:
        assert any(e.endswith(f"/{camera}/predicted") for e in rrd.entities())
        assert any(e.endswith(f"/{camera}/real") for e in rrd.entities())


def test_demo_trains_a_vla_from_the_world_model_and_evaluates_its_grounding(demo):
    out, summary, _ = demo
    trained, evaluated = summary["train_policy"], summary["eval_policy"]
    assert trained["kind"] == "vla" and trained["steps"] == 2 and trained["init"] == str(out / "worldmodel")
    assert evaluated["episodes"] == 2 and evaluated["seeds"][0] == 1_000_000
    assert "grounding_gap" in evaluated and evaluated["shuffled"]["episodes"] == 2
    assert evaluated["latency_ms_p50"] > 0 and set(evaluated["by_language"]) <= {"en", "ja"}
    assert evaluated["threads"] == 1  # the demo's threads= reaches its evaluations too


def test_demo_ends_with_the_vla_again_inside_the_world_model(demo):
    from genba.train.checkpoint import load_model

    out, summary, _ = demo
    real, imagined = summary["eval_policy"], summary["eval_imagined"]
    assert imagined["backend"] == "worldmodel" and imagined["worldmodel"] == str(out / "worldmodel")
    assert imagined["episodes"] == 2 and imagined["seeds"] == real["seeds"][:2]  # the same seeds as in MuJoCo
    assert imagined["seconds_per_episode"] > 0 and 0 <= imagined["successes"] <= 2
    assert load_model(out / "worldmodel" / "last", kind="worldmodel")[1].success_head  # after_success gave labels
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    hf = LeRobotDataset(repo_id="local/demo", root=out / "dataset").hf_dataset.with_format("numpy")
    episode, label = np.asarray(hf["episode_index"]), np.stack(hf[keys.NEXT_SUCCESS]).reshape(-1)
    for e in (0, 1):  # each expert episode goes on 5 steps past its success: its last 6 labels hold, the first not
        labels = label[episode == e]
        assert labels[-6:].all() and not labels[0], labels


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task=fly", "unknown task 'fly' (valid: reach, push, pick_place, stack)"),
        ("image_size=8", "image_size=8 must be an integer in [32, 1024]"),
        ("episodes=0", "episodes=0 must be an integer >= 1"),
        ("lang=fr", "lang='fr' is not one of en, ja, mixed"),
    ],
)
def test_demo_bad_input_is_one_line_before_any_work(tmp_path, capsys, override, message):
    """The demo's options are collect's: checked when the command line is read, not half-way through the demo."""
    out = tmp_path / "demo"
    assert main(["demo", f"out={out}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_demo_evaluates_the_expert_on_held_out_seeds(demo):
    from genba.datasets.commit import read_all_episode_meta

    out, summary, _ = demo
    evaluated = summary["eval"]
    assert evaluated["episodes"] == 3 and evaluated["successes"] == 3 and evaluated["ci95"][1] == 1.0
    trained_on = {record["seed"] for record in read_all_episode_meta(out / "dataset")}
    assert len(trained_on) == 2 and not trained_on & {e["seed"] for e in evaluated["per_episode"]}
