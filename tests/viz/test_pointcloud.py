"""Depth -> world point clouds (open3d) checked against the simulated scene they came from."""

from __future__ import annotations

import numpy as np
import pytest

from genba import keys
from genba.viz.pointcloud import depth_to_points, intrinsics


@pytest.fixture(scope="module")
def rendered() -> dict:
    """One pick_place reset rendered with depth from both cameras, with the true camera poses from MuJoCo."""
    import genba.sim

    env = genba.sim.make("pick_place", image_size=64, cameras=[keys.FRONT, keys.WRIST], depth=True)
    obs, _ = env.reset(seed=3)
    sim = env.unwrapped
    cameras = {}
    for name in (keys.FRONT, keys.WRIST):
        cid = sim.model.camera(name).id
        cameras[name] = {
            "pos": sim.data.cam_xpos[cid].copy(),
            "xmat": sim.data.cam_xmat[cid].reshape(3, 3).copy(),
            "fovy": float(sim.model.cam_fovy[cid]),
        }
    spec = sim.episode_spec()
    env.close()
    target = next(o for o in spec["objects"] if o["role"] == "object")
    return {"obs": obs, "cameras": cameras, "object": target}


def test_intrinsics_follow_mujoco_fovy() -> None:
    fx, fy, cx, cy = intrinsics(64, 48, 90.0)
    assert fx == fy == pytest.approx(24.0) and (cx, cy) == (31.5, 23.5)


@pytest.mark.parametrize("camera", [keys.FRONT, keys.WRIST])
def test_points_land_on_the_floor_and_on_the_object(rendered: dict, camera: str) -> None:
    obs = rendered["obs"]
    points, colors = depth_to_points(
        obs[keys.DEPTH][camera], obs[keys.PIXELS][camera], rendered["cameras"][camera], max_depth=3.0
    )
    assert points.shape[1] == 3 and colors.shape == points.shape and colors.dtype == np.uint8
    assert len(points) > 0.9 * 64 * 64  # the scene fills the view: nearly every pixel has depth
    # the floor is the plane z = 0: the lowest points sit on it and a good share of the image sees it
    assert points[:, 2].min() == pytest.approx(0.0, abs=2e-3)
    assert (np.abs(points[:, 2]) < 3e-3).mean() > 0.1
    # nothing below the floor, nothing far outside the workspace
    assert points[:, 2].min() > -5e-3 and np.abs(points[:, :2]).max() < 2.0
    if camera == keys.FRONT:  # the front camera sees the object: points on its surface, in its colour
        centre = obs[keys.ENV_STATE][:3]
        reach = max(rendered["object"]["size"]) * 1.8 + 0.004
        near = np.linalg.norm(points - centre, axis=1) < reach
        assert near.sum() >= 5
        rgb = np.asarray(rendered["object"]["rgba"][:3])
        mean = colors[near].mean(axis=0) / 255.0
        assert np.argmax(mean) == np.argmax(rgb), (mean, rgb)


def test_without_colour_and_with_voxels_and_truncation(rendered: dict) -> None:
    obs, camera = rendered["obs"], rendered["cameras"][keys.FRONT]
    depth = obs[keys.DEPTH][keys.FRONT]
    full, _ = depth_to_points(depth, None, camera, max_depth=3.0)
    thin, grey = depth_to_points(depth, None, camera, max_depth=3.0, voxel=0.02)
    assert 0 < len(thin) < len(full) and np.all(grey == grey[0])
    near_only, _ = depth_to_points(depth, None, camera, max_depth=float(np.median(depth)))
    assert 0 < len(near_only) < len(full)
    assert np.linalg.norm(near_only - camera["pos"], axis=1).max() < np.linalg.norm(full - camera["pos"], axis=1).max()
    bad = depth.copy()
    bad[:8] = np.nan
    points, _ = depth_to_points(bad, None, camera, max_depth=3.0)
    assert np.isfinite(points).all() and len(points) < len(full)
