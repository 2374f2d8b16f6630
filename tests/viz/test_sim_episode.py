"""A genba sim episode in Rerun: straight from env steps (no dataset), with the 3D scene and point clouds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genba import keys
from genba.viz.data import episode_from_steps
from genba.viz.episode import VizConfig, write_recording
from genba.viz.log import entity
from genba.viz.readback import blueprint_views, read_rrd, verify_rrd

STEPS = 12


@pytest.fixture(scope="module")
def rollout() -> dict:
    """The first STEPS steps of the pick_place expert, 48x48 front + wrist with depth."""
    import genba.sim
    from genba.sim.experts import make_expert

    env = genba.sim.make("pick_place", image_size=48, cameras=[keys.FRONT, keys.WRIST], depth=True)
    expert = make_expert("pick_place", seed=0)
    obs, info = env.reset(seed=5)
    expert.reset()
    observations, actions, success = [], [], []
    for _ in range(STEPS):
        action = expert.act(obs)
        observations.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, step_info = env.step(action)
        success.append(bool(step_info[keys.INFO_SUCCESS]))
        if terminated or truncated:
            break
    spec = env.unwrapped.episode_spec()
    fps = env.unwrapped.fps
    env.close()
    return {
        "observations": observations,
        "actions": actions,
        "success": success,
        "spec": spec,
        "physics": info[keys.INFO_PHYSICS],
        "fps": fps,
    }


def _episode(rollout: dict, *, with_meta: bool):
    meta = {"spec": rollout["spec"], "physics": rollout["physics"], "success": False} if with_meta else None
    return episode_from_steps(
        rollout["observations"],
        rollout["actions"],
        fps=rollout["fps"],
        instruction=rollout["spec"]["instruction"],
        success=rollout["success"],
        meta=meta,
    )


def test_env_steps_log_cameras_depth_and_joints(rollout: dict, tmp_path: Path) -> None:
    ep = _episode(rollout, with_meta=False)
    out = tmp_path / "env.rrd"
    summary = write_recording(ep, out, VizConfig())
    n = len(rollout["observations"])
    assert summary["frames"] == n and summary["scene"] is False
    assert summary["cameras"] == [keys.FRONT, keys.WRIST] and summary["depth_cameras"] == [keys.FRONT, keys.WRIST]
    rrd = read_rrd(out)
    for camera in (keys.FRONT, keys.WRIST):
        assert rrd.series(entity("cameras", camera), "EncodedImage:blob")[0] == list(range(n))
        frames, blobs = rrd.series(entity("depth", camera), "EncodedDepthImage:blob")
        assert frames == list(range(n))
        assert rrd.series(entity("depth", camera), "EncodedDepthImage:media_type")[1][0] == ["image/png"]
        for k in (0, n - 1):
            mm = np.asarray(Image.open(io.BytesIO(bytes(blobs[k][0]))))
            assert mm.dtype == np.uint16 and mm.shape == (48, 48)
            np.testing.assert_allclose(mm / 1000.0, rollout["observations"][k][keys.DEPTH][camera], atol=5.1e-4)
    for j, joint in enumerate(keys.JOINTS):
        _, state = rrd.series(entity("state", joint), "Scalars:scalars")
        _, action = rrd.series(entity("action", joint), "Scalars:scalars")
        np.testing.assert_array_equal(
            np.float32([s[0] for s in state]), [o[keys.AGENT_POS][j] for o in rollout["observations"]]
        )
        np.testing.assert_array_equal(np.float32([a[0] for a in action]), [a[j] for a in rollout["actions"]])
    assert rrd.series("instruction", "TextDocument:text")[1] == [[rollout["spec"]["instruction"]]]


def test_genba_episode_gets_the_scene_in_3d(rollout: dict, tmp_path: Path) -> None:
    from genba.sim.replay import Replayer

    ep = _episode(rollout, with_meta=True)
    out = tmp_path / "scene.rrd"
    summary = write_recording(ep, out, VizConfig(pointcloud_every=4, voxel=0.01))
    n = ep.num_frames
    assert summary["scene"] is True and summary["scene_geoms"] > 5
    assert 3 < summary["scene_moving_bodies"] < summary["scene_bodies"]  # arm links + object move; floor, bin do not
    rrd = read_rrd(out)

    replayer = Replayer(rollout["spec"])
    geoms = replayer.geoms()
    # every geom as a static primitive under its body, in its body frame
    primitives = [e for e in rrd.statics if e.startswith("world/") and "/geom_" in e]
    assert len(primitives) == summary["scene_geoms"] == len(geoms)
    for k, geom in enumerate(geoms):  # each primitive sits at its geom's pose in the body frame
        path = entity("world", geom["body"], f"geom_{k}")
        np.testing.assert_allclose(rrd.static(path, "Transform3D:translation")[0], geom["pos"], atol=1e-6)
        w, x, y, z = geom["quat"]
        assert abs(np.dot(rrd.static(path, "Transform3D:quaternion")[0], [x, y, z, w])) == pytest.approx(1.0)
        size, logged = geom["size"], rrd.statics[path]
        if geom["type"] == "box":
            np.testing.assert_allclose(logged["Boxes3D:half_sizes"][0], size, rtol=1e-6)
        elif geom["type"] in ("capsule", "cylinder"):  # MuJoCo: radius, half-length; rerun: full length
            kind = "Capsules3D" if geom["type"] == "capsule" else "Cylinders3D"
            assert logged[f"{kind}:radii"][0] == pytest.approx(size[0])
            assert logged[f"{kind}:lengths"][0] == pytest.approx(2 * size[1])
        elif geom["type"] == "sphere":
            np.testing.assert_allclose(logged["Ellipsoids3D:half_sizes"][0], [size[0]] * 3, rtol=1e-6)
    assert {g["type"] for g in geoms} >= {"box", "capsule"}  # the arm is capsules, the objects boxes
    bodies = {g["body"] for g in geoms}
    assert len(bodies) == summary["scene_bodies"]
    # the manipulated object's body follows environment_state slot 0 frame by frame
    obj = next(o for o in rollout["spec"]["objects"] if o["role"] == "object")
    frames, translations = rrd.series(entity("world", obj["name"]), "Transform3D:translation")
    assert frames == list(range(n))
    np.testing.assert_allclose(
        np.array([t[0] for t in translations]), ep.env_state[:, :3], atol=1e-5, err_msg="object body pose"
    )
    # every visible body's pose in the last frame equals the Replayer's: per frame if it moves, else static
    poses = replayer.body_poses(ep.state[-1], ep.env_state[-1])
    moving = 0
    for body in bodies:
        path = entity("world", body)
        _, translations = rrd.series(path, "Transform3D:translation")
        moving += bool(translations)
        _, quaternions = rrd.series(path, "Transform3D:quaternion")
        last = translations[-1][0] if translations else rrd.static(path, "Transform3D:translation")[0]
        quat = quaternions[-1][0] if quaternions else rrd.static(path, "Transform3D:quaternion")[0]
        np.testing.assert_allclose(last, poses[body][0], atol=1e-6, err_msg=body)
        w, x, y, z = poses[body][1]  # MuJoCo wxyz; rerun stores xyzw (q and -q are the same rotation)
        assert abs(np.dot(quat, [x, y, z, w])) == pytest.approx(1.0, abs=1e-5), body
    assert moving == summary["scene_moving_bodies"]
    # point clouds every 4th frame from each depth camera, in the world
    for camera in (keys.FRONT, keys.WRIST):
        frames, positions = rrd.series(entity("world", "points", camera), "Points3D:positions")
        assert frames == list(range(0, n, 4))
        assert all(len(p) > 50 for p in positions)
        assert min(min(xyz[2] for xyz in p) for p in positions) == pytest.approx(0.0, abs=5e-3)  # the floor
    assert summary["points"] == sum(
        len(rrd.series(entity("world", "points", c), "Points3D:positions")[1][k])
        for c in (keys.FRONT, keys.WRIST)
        for k in range(len(range(0, n, 4)))
    )
    assert {"kind": "3D", "name": "scene", "origin": "world"} in blueprint_views(out)
    assert "verified without error" in verify_rrd(out)  # the viewer's own loader accepts every archetype
    # camera frustums follow the sim cameras
    frames, _ = rrd.series(entity("world", "cameras", keys.WRIST), "Transform3D:translation")
    assert frames == list(range(n))


def test_a_spec_this_genba_cannot_rebuild_costs_only_the_3d_view(
    rollout: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = _episode(rollout, with_meta=True)
    ep.meta = {**ep.meta, "spec": {"task": "juggle", "objects": "from a future genba"}}
    out = tmp_path / "future.rrd"
    summary = write_recording(ep, out, VizConfig())
    assert summary["scene"] is False and summary["points"] == 0
    assert "cannot rebuild the scene" in summary["scene_error"]
    assert "warning: cannot rebuild the scene" in capsys.readouterr().err
    rrd = read_rrd(out)
    assert not [e for e in rrd.entities() if e.startswith("world")]
    assert rrd.series(entity("cameras", keys.FRONT), "EncodedImage:blob")[0] == list(range(ep.num_frames))
