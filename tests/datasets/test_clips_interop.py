"""genba's clips equal what lerobot's own LeRobotDataset returns with the matching delta_timestamps, sample by sample,
exactly (state, action, pad masks, task, indices and the uint8 pixels): on a dataset written by lerobot with foreign
features (several episodes per video file, so from_timestamp offsets matter) and on a `genba collect` dataset (one
video file per episode). Pixels are exact, not within a tolerance, because both sides decode the same video with
torchcodec and pick the same frame index: round((from_timestamp + timestamp) * average_fps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from foreign_dataset import CAMS, TASKS

from genba.cli import main
from genba.datasets.bench import compare_samples, make_lerobot_clips
from genba.datasets.clips import ClipConfig, ClipDataset


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("collected") / "pick"
    assert main(["collect", "task=pick_place", "episodes=2", f"out={out}", "image_size=64", "lang=ja"]) == 0
    return out


def assert_same_as_lerobot(ds: ClipDataset) -> None:
    lerobot = make_lerobot_clips(ds)
    assert len(lerobot) == len(ds)
    for i in range(len(ds)):
        mine, theirs = ds[i], lerobot[i]
        assert compare_samples(mine, theirs) == [], f"sample {i}"


@pytest.mark.parametrize("cache", ["disk", "off"])
def test_foreign_dataset_equals_lerobot(foreign, tmp_path, cache):
    cfg = ClipConfig(
        data=str(foreign), obs_frames=3, frame_stride=2, action_horizon=5, future_frames=3, cache=cache,
        cache_dir=str(tmp_path), extra_keys=["observation.effort"], rename=["cam_left_wrist:wrist"],
    )  # fmt: skip
    ds = ClipDataset(cfg, progress=False)
    assert len(ds.cameras) == len(CAMS) and "wrist" in ds.cameras
    assert {ds[i]["task"] for i in range(len(ds))} == set(TASKS)  # the Japanese instruction survives
    assert_same_as_lerobot(ds)


def test_resized_clips_equal_resized_lerobot_frames(foreign, tmp_path):
    cfg = ClipConfig(data=str(foreign), cameras=["cam_low"], image_size=48, cache_dir=str(tmp_path))
    ds = ClipDataset(cfg, progress=False)
    assert ds[0]["observation.images.cam_low"].shape == (2, 3, 48, 48)
    assert_same_as_lerobot(ds)


def test_collected_dataset_equals_lerobot(collected, tmp_path):
    cfg = ClipConfig(data=str(collected), future_frames=8, cache_dir=str(tmp_path))
    ds = ClipDataset(cfg, progress=False)
    assert set(ds.cameras) == {"front", "wrist"} and ds.fps == 10
    assert all(not t.isascii() for t in ds.tasks)  # lang=ja
    assert_same_as_lerobot(ds)
