"""Replayer: the scene rebuilt from its JSON spec matches the env's own poses and cameras."""

import json

import numpy as np
import pytest

import genba.sim
from genba import keys
from genba.sim.experts import make_expert
from genba.sim.replay import Replayer


@pytest.mark.parametrize("task", ["pick_place", "push"])
def test_replayer_matches_env(task):
    env = genba.sim.make(task, cameras=["front", "wrist"], image_size=32)
    obs, _ = env.reset(seed=4)
    expert = make_expert(task)
    rep = Replayer(json.loads(json.dumps(env.unwrapped.episode_spec())))  # through JSON, as stored
    u = env.unwrapped
    for step in range(25):
        if step % 6 == 0:
            poses = rep.body_poses(obs[keys.AGENT_POS], obs[keys.ENV_STATE])
            for i in range(u.model.nbody):
                name = u.model.body(i).name
                pos, quat = poses[name]
                # the mirrored finger follows a soft equality constraint: sub-millimetre lag
                tol = 1e-3 if name == "finger_right" else 1e-5
                np.testing.assert_allclose(pos, u.data.xpos[i], atol=tol, err_msg=name)
                assert abs(abs(np.dot(quat, u.data.xquat[i])) - 1) < 1e-5, name
            for cam in ("front", "wrist"):
                c = rep.camera(cam, obs[keys.AGENT_POS], obs[keys.ENV_STATE])
                cid = u.model.camera(cam).id
                np.testing.assert_allclose(c["pos"], u.data.cam_xpos[cid], atol=1e-5)
                np.testing.assert_allclose(c["xmat"].ravel(), u.data.cam_xmat[cid], atol=1e-5)
                assert c["fovy"] == pytest.approx(u.model.cam_fovy[cid]) and c["width"] == c["height"] == 32
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        if terminated or truncated:
            break


def test_geoms_describe_the_scene():
    env = genba.sim.make("pick_place", cameras=[])
    env.reset(seed=0)
    geoms = Replayer(env.unwrapped.episode_spec()).geoms()
    types = {g["type"] for g in geoms}
    assert {"plane", "box", "capsule", "cylinder"} <= types
    bodies = {g["body"] for g in geoms}
    assert {"base", "hand", "finger_left", "object", "goal"} <= bodies
    for g in geoms:
        assert len(g["size"]) == 3 and len(g["rgba"]) == 4 and len(g["pos"]) == 3 and len(g["quat"]) == 4
    assert sum(g["body"] == "goal" for g in geoms) == 5  # the bin: floor + 4 walls
