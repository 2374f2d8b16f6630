"""Episode arrays: feature names from any dataset's metadata, episodes without state, action or cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.viz.data import episode_from_steps, feature_names
from genba.viz.episode import VizConfig, write_recording
from genba.viz.log import entity
from genba.viz.readback import blueprint_views, read_rrd


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ({"names": ["a", "b"]}, ["a", "b"]),
        ({"names": {"motors": ["x", "y"]}}, ["x", "y"]),  # lerobot's older per-axis form
        ({"names": None}, ["state_0", "state_1"]),
        ({"names": ["only one"]}, ["state_0", "state_1"]),  # wrong length: indices rather than wrong labels
        ({}, ["state_0", "state_1"]),
    ],
)
def test_feature_names(feature: dict, expected: list[str]) -> None:
    assert feature_names(feature, "state", 2) == expected


def test_pixels_only_episode_logs_without_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    observations = [{keys.PIXELS: {"cam 1": rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)}} for _ in range(4)]
    ep = episode_from_steps(observations, None, fps=4, instruction="見るだけ")
    out = tmp_path / "pixels.rrd"
    summary = write_recording(ep, out, VizConfig(images="h264"))  # odd 9x11 frames are padded for 4:2:0
    assert summary["frames"] == 4 and summary["state_names"] == [] and summary["success"] is None
    rrd = read_rrd(out)
    assert rrd.series(entity("cameras", "cam 1"), "VideoStream:sample")[0] == [0, 1, 2, 3]
    np.testing.assert_allclose(rrd.times(entity("cameras", "cam 1")), [0, 0.25, 0.5, 0.75])
    assert not [e for e in rrd.entities() if e.startswith(("state", "action", "success"))]
    kinds = {v["kind"] for v in blueprint_views(out)}
    assert "TimeSeries" not in kinds and "2D" in kinds


def test_no_observations_is_an_error() -> None:
    with pytest.raises(GenbaError, match="no observations"):
        episode_from_steps([], None, fps=10, instruction="")
