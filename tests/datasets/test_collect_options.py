"""`genba collect` throughput and rate options on real MuJoCo rendering and lerobot's writer: fps=30 with a gripper
that closes over several frames (no single-frame jump of half the gripper's range, lerobot-lint's "encoder
wraparound" rule), multisampling off (images differ from the default only along edges)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.datasets.collect import CollectConfig, run_collect
from genba.datasets.commit import read_all_episode_meta
from genba.datasets.writer import repo_id_for

pytestmark = pytest.mark.xdist_group("datasets_collect_options")


def columns(root: Path) -> dict[str, np.ndarray]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    hf = LeRobotDataset(repo_id_for(root), root=root).hf_dataset.with_format("numpy")
    return {k: np.stack(hf[k]) for k in hf.column_names}


def largest_jump_fraction(values: np.ndarray) -> float:
    """lerobot-lint's DISCONTINUITY measure: the largest frame-to-frame change over the episode's range."""
    span = float(values.max() - values.min())
    return float(np.abs(np.diff(values)).max() / span) if span > 0 else 0.0


def test_fps_30_smooth_gripper(tmp_path):
    out = tmp_path / "pp30"
    summary = run_collect(CollectConfig(task="pick_place", episodes=1, fps=30, image_size=32, cameras=[], out=str(out)))
    assert summary["fps"] == 30 and summary["expert_success_rate"] == 1.0
    assert json.loads((out / "meta/info.json").read_text())["fps"] == 30
    (meta,) = read_all_episode_meta(out)
    assert meta["spec"]["fps"] == 30 and meta["length"] > 60  # about 3 s of motion: ~90 frames at 30 fps
    cols = columns(out)
    gripper_cmd, gripper = cols[keys.ACTION][:, 5], cols[keys.OBS_STATE][:, 5]
    assert largest_jump_fraction(gripper_cmd) <= 0.12  # 9 frames from open to closed
    assert largest_jump_fraction(gripper) < 0.5
    np.testing.assert_allclose(np.diff(cols["timestamp"]), 1 / 30, atol=1e-6)


def test_fps_is_validated():
    with pytest.raises(ValueError, match="fps=0"):
        CollectConfig(fps=0)


def test_multisampling_off_changes_only_edges():
    from genba.sim import make
    from genba.sim.render import offscreen_samples

    images = {}
    for samples in (None, 0):
        with offscreen_samples(samples):
            env = make("pick_place", image_size=128, cameras=["front"])
            obs, _ = env.reset(seed=3)
        images[samples] = obs[keys.PIXELS]["front"].astype(int)
        env.close()
    diff = np.abs(images[None] - images[0]).max(axis=-1)
    assert diff.max() > 20  # aliased edges: really another image
    assert (diff > 8).mean() < 0.1  # ... but only along edges
    assert np.abs(images[None] - images[0]).mean() < 2.0


def test_multisampling_is_part_of_the_identity(tmp_path):
    base = {"task": "reach", "episodes": 1, "image_size": 32, "cameras": ["front"]}
    assert "multisampling" not in CollectConfig(**base).identity()  # datasets written before the option resume
    assert CollectConfig(**base, multisampling=False).identity()["multisampling"] is False


@pytest.mark.parametrize(("vcodec", "preset"), [("h264", "ultrafast"), ("hevc", "ultrafast")])
def test_video_codec_through_lerobots_encoder(tmp_path, vcodec, preset, capfd):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / vcodec
    base = {"task": "reach", "episodes": 2, "image_size": 64, "cameras": ["front"]}
    run_collect(CollectConfig(**base, vcodec=vcodec, video_preset=preset, out=str(out)))
    info = json.loads((out / "meta/info.json").read_text())["features"][keys.image_key("front")]["info"]
    assert (info["video.codec"], info["video.preset"]) == (vcodec, preset)
    assert "encoded" not in capfd.readouterr().err  # x265's per-file report is silenced
    ref = tmp_path / "av1"
    run_collect(CollectConfig(**base, out=str(ref)))
    a, b = (LeRobotDataset(repo_id_for(r), root=r) for r in (out, ref))
    assert len(a) == len(b)
    for i in range(len(a)):  # the same rendered frames through two lossy codecs
        assert (a[i][keys.image_key("front")] - b[i][keys.image_key("front")]).abs().mean() < 0.04


def test_bad_codec_options_are_refused_before_any_work():
    with pytest.raises(ValueError, match="vcodec='vp9' is not one of av1, h264, hevc"):
        CollectConfig(vcodec="vp9")
    with pytest.raises(ValueError, match="video_preset='bogus' for vcodec=h264 is not one of ultrafast"):
        CollectConfig(vcodec="h264", video_preset="bogus")
    assert CollectConfig(vcodec="h264").identity()["vcodec"] == "h264"
    assert CollectConfig(video_preset="13").video()["preset"] == 13
