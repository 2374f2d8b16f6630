"""`genba viz` on a dataset written by `genba collect` with depth: metadata, 3D scene and point clouds from disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from viz_collect import collect_reach

from genba import keys
from genba.cli import main
from genba.viz.log import entity
from genba.viz.readback import read_rrd


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect_reach(tmp_path_factory.mktemp("genba") / "reach", "depth=true", "lang=ja")


def test_genba_dataset_with_depth(collected: Path, tmp_path: Path) -> None:
    from lerobot.datasets import LeRobotDataset

    from genba.datasets.commit import read_episode_meta

    out = tmp_path / "reach.rrd"
    assert main(["viz", f"data={collected}", "episode=0", f"out={out}", "voxel=0"]) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    meta = read_episode_meta(collected, 0)
    assert summary["success"] is meta["success"] is True
    assert summary["instruction"] == meta["spec"]["instruction"] and summary["depth_cameras"] == [keys.FRONT]
    assert summary["scene"] is True and summary["scene_moving_bodies"] >= 5 and summary["points"] > 0

    ds = LeRobotDataset("local/reach", root=collected, episodes=[0])
    state = np.stack([ds.hf_dataset[i][keys.OBS_STATE].numpy() for i in range(len(ds))])
    rrd = read_rrd(out)
    for j, joint in enumerate(keys.JOINTS):
        frames, values = rrd.series(entity("state", joint), "Scalars:scalars")
        assert frames == list(range(len(ds)))
        np.testing.assert_array_equal(np.float32([v[0] for v in values]), state[:, j])
    # depth is read in metres (lerobot's default would be millimetres): the back-projected floor sits at z = 0
    # and the points span a workspace of about a metre, not a kilometre
    _, clouds = rrd.series(entity("world", "points", keys.FRONT), "Points3D:positions")
    assert len(clouds) == len(ds)
    points = np.array(clouds[0])
    assert points[:, 2].min() == pytest.approx(0.0, abs=5e-3) and np.abs(points).max() < 2.0
    # 32x32 depth, no voxel thinning: one point per pixel closer than max_depth
    assert 0.5 * 32 * 32 < len(points) <= 32 * 32
    # genba records the outcome per episode, not per frame: one point at the last frame
    assert rrd.series("success", "Scalars:scalars") == ([len(ds) - 1], [[1.0]])
    panel = rrd.static("episode", "TextDocument:text")[0]
    assert "success" in panel and "physics" in panel and str(meta["seed"]) in panel
    assert rrd.series("instruction", "TextDocument:text")[1] == [[meta["spec"]["instruction"]]]


def test_metadata_that_does_not_match_the_episode_is_ignored(
    collected: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lerobot's own tools can renumber episodes behind genba's back: a wrong scene is worse than none."""
    import shutil

    root = tmp_path / "edited"
    shutil.copytree(collected, root)
    lines = (root / "meta" / "genba" / "episodes.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["length"] += 5
    lines[0] = json.dumps(record, ensure_ascii=False)
    (root / "meta" / "genba" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "edited.rrd"
    assert main(["viz", f"data={root}", "episode=0", f"out={out}"]) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["scene"] is False and summary["points"] == 0 and summary["success"] is None
    assert "ignoring genba" in capsys.readouterr().err
    assert not [e for e in read_rrd(out).entities() if e.startswith("world")]
