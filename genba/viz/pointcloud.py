"""Coloured point clouds from recorded depth, back-projected with open3d and placed in the world by the sim camera.

Conventions: MuJoCo depth is the distance along the optical axis in metres (what open3d's pinhole model expects);
MuJoCo's fovy is the vertical field of view with the principal point at the image centre; a MuJoCo camera looks
along its -z axis with +y up, while open3d's camera frame looks along +z with +y down, hence the (1, -1, -1) flip.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from genba.viz.data import Episode
from genba.viz.log import WORLD, entity, set_frame

if TYPE_CHECKING:
    import rerun as rr

OPEN3D_TO_MUJOCO = np.array([1.0, -1.0, -1.0])  # camera-frame axis flip, see the module docstring


def intrinsics(width: int, height: int, fovy_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a MuJoCo camera: square pixels, principal point at the centre."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


def depth_to_points(
    depth: np.ndarray,
    rgb: np.ndarray | None,
    camera: dict[str, Any],
    *,
    max_depth: float = 2.0,
    voxel: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) float32 and colours (N, 3) uint8 from one depth image (H, W) float32 metres.

    camera: Replayer.camera(...) of the view that produced the depth: pos (3,), xmat (3, 3), fovy (degrees).
    rgb (H, W, 3) uint8 of the same view colours the points (grey without it). Pixels at 0, beyond max_depth
    (background, sky) or not finite are dropped; voxel > 0 thins the cloud to one point per voxel (metres).
    """
    import open3d as o3d

    h, w = depth.shape
    fx, fy, cx, cy = intrinsics(w, h, float(camera["fovy"]))
    pinhole = o3d.camera.PinholeCameraIntrinsic(w, h, fx, fy, cx, cy)
    depth = np.ascontiguousarray(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float32)
    depth_image = o3d.geometry.Image(depth)
    if rgb is not None and rgb.shape[:2] == depth.shape:
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(rgb, dtype=np.uint8)),
            depth_image,
            depth_scale=1.0,
            depth_trunc=max_depth,
            convert_rgb_to_intensity=False,
        )
        cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, pinhole)
    else:
        cloud = o3d.geometry.PointCloud.create_from_depth_image(
            depth_image, pinhole, depth_scale=1.0, depth_trunc=max_depth
        )
        cloud.paint_uniform_color([0.6, 0.6, 0.6])
    if voxel > 0:
        cloud = cloud.voxel_down_sample(voxel)
    local = np.asarray(cloud.points) * OPEN3D_TO_MUJOCO  # (N, 3) in the MuJoCo camera frame
    world = local @ np.asarray(camera["xmat"], dtype=np.float64).reshape(3, 3).T + np.asarray(camera["pos"])
    colors = (np.asarray(cloud.colors) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return world.astype(np.float32), colors


def log_pointclouds(
    rec: rr.RecordingStream,
    ep: Episode,
    replayer: Any,
    *,
    every: int = 1,
    max_depth: float = 2.0,
    voxel: float = 0.0,
) -> int:
    """Log world/points/<camera> every `every` frames for each depth camera; returns the number of points logged.

    replayer: a genba.sim.replay.Replayer of this episode's scene (gives each frame's camera pose, which moves for
    the wrist camera and carries the episode's camera jitter).
    """
    import rerun as rr
    from tqdm import tqdm

    if ep.state is None or ep.env_state is None or not ep.depth:
        return 0
    known = {c for c in ep.depth if _has_camera(replayer, c, ep.state[0], ep.env_state[0])}
    total = 0
    frames = range(0, ep.num_frames, max(1, every))
    for i in tqdm(frames, desc="point clouds", unit="frame", leave=False, disable=None):
        set_frame(rec, ep, i)
        for camera, depth in ep.depth.items():
            if camera not in known:
                continue
            cam = replayer.camera(camera, ep.state[i], ep.env_state[i])
            rgb = ep.images[camera][i] if camera in ep.images else None
            points, colors = depth_to_points(depth[i], rgb, cam, max_depth=max_depth, voxel=voxel)
            rec.log(entity(WORLD, "points", camera), rr.Points3D(points, colors=colors, radii=0.002))
            total += len(points)
    rec.reset_time()
    return total


def _has_camera(replayer: Any, name: str, state: np.ndarray, env_state: np.ndarray) -> bool:
    """Depth features named after a camera the sim does not have (a renamed feature) get no point cloud."""
    from genba.errors import GenbaError

    try:
        replayer.camera(name, state, env_state)
    except (GenbaError, KeyError):
        return False
    return True
