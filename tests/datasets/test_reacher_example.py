"""examples/reacher_dataset.py records gymnasium's Reacher-v5 with lerobot's own writer (one camera stored as
`observation.image`, a 10-value state, 2 actions, 50 fps), and both lerobot's LeRobotDataset and genba's ClipDataset
read what it wrote, sample for sample the same."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from genba.datasets.bench import compare_samples, make_lerobot_clips
from genba.datasets.clips import ClipConfig, ClipDataset

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "reacher_dataset.py"


@pytest.fixture(scope="module")
def reacher():
    spec = importlib.util.spec_from_file_location("reacher_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recorded(reacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reacher") / "ds"
    assert reacher.main(["--out", str(out), "--episodes", "2", "--steps", "12", "--image-size", "32"]) == out
    return out


def test_lerobot_reads_the_recording_with_its_features(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/reacher", root=recorded)
    assert (ds.meta.fps, ds.meta.total_episodes, ds.meta.total_frames) == (50, 2, 24)
    assert ds.meta.video_keys == ["observation.image"]
    feats = ds.meta.features
    assert tuple(feats["observation.image"]["shape"]) == (32, 32, 3)
    assert tuple(feats["observation.state"]["shape"]) == (10,) and feats["observation.state"]["names"][4] == "target_x"
    assert tuple(feats["action"]["shape"]) == (2,)
    first, second = ds[0], ds[12]
    assert first["observation.image"].shape == (3, 32, 32)
    assert first["task"].startswith("reach the target in the ") and second["task"].endswith("の目標に手を伸ばして")
    actions = np.stack([ds[i]["action"].numpy() for i in range(12)])
    assert np.abs(actions).max() <= 1.0 and actions.std(0).min() > 0.01  # the controller moves both joints
    assert not np.array_equal(ds[0]["observation.image"], ds[11]["observation.image"])  # the arm moved


def test_genba_clips_read_the_recording_as_lerobot_does(recorded, tmp_path):
    cfg = ClipConfig(data=str(recorded), obs_frames=1, future_frames=4, action_horizon=5, cache_dir=str(tmp_path))
    clips = ClipDataset(cfg, progress=False)
    assert len(clips) == 24
    sample = clips[3]
    image = next(k for k in sample if k.startswith("observation.images.") and not k.endswith("_is_pad"))
    assert sample[image].shape == (1, 3, 32, 32)
    assert sample["future.state"].shape == (4, 10) and sample["action"].shape == (5, 2)
    lerobot = make_lerobot_clips(clips)
    for i in (0, 11, 12, 23):  # episode edges, where padding starts
        assert compare_samples(clips[i], lerobot[i]) == [], f"sample {i}"


def test_instructions_name_the_quadrant_seen_from_above(reacher):
    assert reacher.instruction(np.array([-0.1, 0.1]), 0) == "reach the target in the upper left"
    assert reacher.instruction(np.array([0.1, -0.1]), 2) == "reach the target in the lower right"
    assert reacher.instruction(np.array([0.1, 0.1]), 1) == "右上の目標に手を伸ばして"
    assert reacher.instruction(np.array([-0.1, -0.1]), 3) == "左下の目標に手を伸ばして"


def test_an_existing_folder_is_refused_in_one_line(reacher, recorded):
    with pytest.raises(SystemExit, match="already exists and is not empty"):
        reacher.main(["--out", str(recorded)])
