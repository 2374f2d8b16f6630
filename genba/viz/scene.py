"""The arm and objects of a genba sim episode in 3D: geoms once as static primitives, bodies moved every frame.

The scene is rebuilt offline from the episode spec that genba stores with each episode
(`genba.sim.replay.Replayer`), so a dataset carries no meshes: per frame only the joint state and the object state
(observation.state, observation.environment_state) are needed to pose every body.

Entities: world/<body> gets the body's world pose per frame (rr.Transform3D), world/<body>/geom_<k> the geom's
pose in its body (static) and its primitive; world/cameras/<camera> a pinhole frustum following the sim camera.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from genba.errors import GenbaError
from genba.viz.data import Episode
from genba.viz.log import WORLD, entity, time_columns

if TYPE_CHECKING:
    import rerun as rr

INFINITE_PLANE_HALF = 1.0  # metres drawn for a MuJoCo plane of size 0 (infinite)
PLANE_HALF_THICKNESS = 0.0005


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    """(..., 4) MuJoCo quaternion (w, x, y, z) -> Rerun's (x, y, z, w)."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def primitive(geom: dict[str, Any]) -> Any:
    """The rerun archetype of one Replayer.geoms() entry, centred on the geom frame like MuJoCo's geom."""
    import rerun as rr

    kind = geom["type"]
    size = np.asarray(geom["size"], dtype=np.float64)
    rgba = np.clip(np.asarray(geom.get("rgba", (0.7, 0.7, 0.7, 1.0)), dtype=np.float64), 0, 1)
    color = (rgba * 255 + 0.5).astype(np.uint8)
    solid = rr.components.FillMode.Solid
    if kind == "box":  # size = half extents
        return rr.Boxes3D(half_sizes=[size[:3]], colors=[color], fill_mode=solid)
    if kind == "sphere":  # size[0] = radius
        return rr.Ellipsoids3D(half_sizes=[[size[0]] * 3], colors=[color], fill_mode=solid)
    if kind == "ellipsoid":  # size = radii
        return rr.Ellipsoids3D(half_sizes=[size[:3]], colors=[color], fill_mode=solid)
    if kind == "capsule":  # size = radius, half-length of the cylinder part; rerun's capsule starts at the origin
        return rr.Capsules3D(
            lengths=[2 * size[1]], radii=[size[0]], translations=[[0, 0, -size[1]]], colors=[color], fill_mode=solid
        )
    if kind == "cylinder":  # size = radius, half-height; rerun's cylinder is centred
        return rr.Cylinders3D(lengths=[2 * size[1]], radii=[size[0]], colors=[color], fill_mode=solid)
    if kind == "plane":  # size = half-x, half-y (0 = infinite), spacing
        half = [size[0] or INFINITE_PLANE_HALF, size[1] or INFINITE_PLANE_HALF, PLANE_HALF_THICKNESS]
        return rr.Boxes3D(half_sizes=[half], centers=[[0, 0, -PLANE_HALF_THICKNESS]], colors=[color], fill_mode=solid)
    return None  # mesh / hfield / sdf: genba's scenes have none; skip rather than fail a visualisation


def log_scene(rec: rr.RecordingStream, ep: Episode, replayer: Any, *, cameras: bool = True) -> dict[str, int]:
    """Log the episode's scene; returns counts {"geoms", "bodies" (with a geom), "moving" (pose changes)}.

    replayer: a genba.sim.replay.Replayer of this episode's spec. Needs ep.state (F, 6) and ep.env_state (F, E).
    """
    import rerun as rr

    if ep.state is None or ep.env_state is None:
        return {"geoms": 0, "bodies": 0, "moving": 0}
    rec.log(WORLD, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    visible: list[str] = []  # bodies that carry a logged primitive, in model order
    geoms = 0
    for k, geom in enumerate(replayer.geoms()):
        shape = primitive(geom)
        if shape is None:
            continue
        body = str(geom["body"])
        path = entity(WORLD, body, f"geom_{k}")
        local = rr.Transform3D(
            translation=np.asarray(geom.get("pos", (0, 0, 0)), dtype=np.float64),
            quaternion=rr.Quaternion(xyzw=wxyz_to_xyzw(geom.get("quat", (1, 0, 0, 0)))),
        )
        rec.log(path, local, static=True)
        rec.log(path, shape, static=True)
        geoms += 1
        visible += [body] if body not in visible else []

    # (F,) dicts of body -> (pos (3,), quat wxyz (4,)). Bodies that never move (floor, bin, base) get one static
    # transform; the others one column each rather than F log calls.
    poses = [replayer.body_poses(ep.state[i], ep.env_state[i]) for i in range(ep.num_frames)]
    moving = 0
    for body in visible:
        translation = np.stack([np.asarray(p[body][0], dtype=np.float64) for p in poses])  # (F, 3)
        quaternion = wxyz_to_xyzw(np.stack([np.asarray(p[body][1]) for p in poses]))  # (F, 4)
        path = entity(WORLD, body)
        if np.allclose(translation, translation[0], atol=1e-7) and np.allclose(quaternion, quaternion[0], atol=1e-7):
            rec.log(path, rr.Transform3D(translation=translation[0], quaternion=quaternion[0]), static=True)
            continue
        moving += 1
        rec.send_columns(
            path,
            indexes=time_columns(ep),
            columns=rr.Transform3D.columns(translation=translation, quaternion=quaternion),
        )
    if cameras:
        _log_cameras(rec, ep, replayer)
    return {"geoms": geoms, "bodies": len(visible), "moving": moving}


def _log_cameras(rec: rr.RecordingStream, ep: Episode, replayer: Any) -> None:
    """A frustum per recorded camera, moving with it (the wrist camera rides on the hand)."""
    import rerun as rr

    from genba.viz.pointcloud import intrinsics

    names = list(dict.fromkeys([*ep.images, *ep.depth]))
    for name in names:
        try:
            cams = [replayer.camera(name, ep.state[i], ep.env_state[i]) for i in range(ep.num_frames)]
        except (GenbaError, KeyError):  # a camera the sim does not know (renamed feature): no frustum
            continue
        path = entity(WORLD, "cameras", name)
        h, w = (ep.images.get(name) if name in ep.images else ep.depth[name]).shape[1:3]
        fx, fy, cx, cy = intrinsics(w, h, float(cams[0]["fovy"]))
        pinhole = rr.Pinhole(
            focal_length=[fx, fy],
            principal_point=[cx, cy],
            resolution=[w, h],
            camera_xyz=rr.ViewCoordinates.RUB,  # MuJoCo cameras look along -z with +y up: Right, Up, Back
            image_plane_distance=0.05,
        )
        rec.log(path, pinhole, static=True)
        mats = np.stack([np.asarray(c["xmat"], dtype=np.float64).reshape(3, 3) for c in cams])  # (F, 3, 3)
        pos = np.stack([np.asarray(c["pos"], dtype=np.float64) for c in cams])  # (F, 3)
        rec.send_columns(path, indexes=time_columns(ep), columns=rr.Transform3D.columns(translation=pos, mat3x3=mats))
