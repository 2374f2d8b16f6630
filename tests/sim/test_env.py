"""The gymnasium env: API conformance, observation layout, determinism, instructions, blow-ups, action modes."""

import json
import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genba.sim
from genba import keys
from genba.errors import GenbaError
from genba.sim.scene import ENV_STATE_DIM

TASKS = list(genba.sim.TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env(task):
    env = genba.sim.make(task, image_size=32, depth=True)
    check_env(env, skip_render_check=True)
    env.close()


def test_check_env_physics_only_ee_delta():
    env = genba.sim.make("push", cameras=[], action_mode="ee_delta", lang="mixed", fps=20)
    check_env(env, skip_render_check=True)
    assert env.unwrapped.max_episode_steps == 160  # the default time limit is in seconds: 8 s at 20 fps


def test_registered_ids_and_make_errors():
    env = gym.make("genba/PickPlace-v0", cameras=[], lang="ja")
    assert env.unwrapped.task == "pick_place"
    obs, _info = env.reset(seed=0)
    assert keys.PIXELS not in obs
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", env.unwrapped.task_description)
    assert set(genba.sim.GYM_IDS.values()) <= set(gym.registry)
    with pytest.raises(GenbaError, match="valid: reach, push, pick_place, stack"):
        genba.sim.make("juggle")
    with pytest.raises(GenbaError, match="lang='fr'"):
        genba.sim.make("reach", lang="fr")
    with pytest.raises(GenbaError, match="cameras"):
        genba.sim.make("reach", cameras=["top"])
    with pytest.raises(GenbaError, match="fps=0"):
        genba.sim.make("reach", fps=0)
    with pytest.raises(GenbaError, match="action_mode='torque'"):
        genba.sim.make("reach", action_mode="torque")
    with pytest.raises(GenbaError, match="unknown env option"):
        genba.sim.make("reach", imagesize=64)


def test_observation_layout_and_lerobot_preprocessing():
    from lerobot.envs.utils import preprocess_observation

    env = genba.sim.make("stack", image_size=48, depth=True)
    obs, info = env.reset(seed=3)
    assert set(obs[keys.PIXELS]) == {"front", "wrist"}
    for cam in ("front", "wrist"):
        assert obs[keys.PIXELS][cam].shape == (48, 48, 3) and obs[keys.PIXELS][cam].dtype == np.uint8
        assert obs[keys.PIXELS][cam].std() > 5  # a real picture, not a blank frame
        depth = obs[keys.DEPTH][cam]
        assert depth.shape == (48, 48) and depth.dtype == np.float32
        assert depth.min() > 0.01 and np.median(depth) < 2.0  # metres (the sky reads as the far plane)
    assert obs[keys.AGENT_POS].shape == (6,) and obs[keys.AGENT_POS].dtype == np.float32
    state = obs[keys.ENV_STATE]
    assert state.shape == (ENV_STATE_DIM,) and state.dtype == np.float32
    spec = env.unwrapped.episode_spec()
    slots = state.reshape(5, 7)
    for obj in spec["objects"]:  # each object's slot holds its initial position and a unit quaternion
        assert np.allclose(slots[obj["slot"], :2], obj["pos"][:2], atol=2e-3)
        assert np.isclose(np.linalg.norm(slots[obj["slot"], 3:]), 1.0, atol=1e-4)
    used = {o["slot"] for o in spec["objects"]}
    assert all(not slots[s].any() for s in range(5) if s not in used)
    assert info[keys.INFO_PHYSICS] == spec["physics"]
    json.dumps(spec)  # JSON-able
    assert spec["seed"] == 3 and spec["task"] == "stack"
    u = env.unwrapped
    assert u.joint_names == keys.JOINTS and u.joint_limits.shape == (6, 2) and u.fps == 10

    batch = preprocess_observation(obs)
    assert batch["observation.images.front"].shape == (1, 3, 48, 48)
    assert batch["observation.state"].shape == (1, 6)
    assert batch["observation.environment_state"].shape == (1, ENV_STATE_DIM)


def test_deterministic_for_a_seed():
    def run(seed):
        env = genba.sim.make("pick_place", image_size=32)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        frames = [obs]
        for _ in range(5):
            obs, *_ = env.step(env.action_space.low + rng.random(6) * (env.action_space.high - env.action_space.low))
            frames.append(obs)
        return env.unwrapped.task_description, frames

    (i1, a), (i2, b), (_i3, c) = run(7), run(7), run(8)
    assert i1 == i2
    for fa, fb in zip(a, b, strict=True):
        for cam in ("front", "wrist"):
            np.testing.assert_array_equal(fa[keys.PIXELS][cam], fb[keys.PIXELS][cam])
        np.testing.assert_array_equal(fa[keys.AGENT_POS], fb[keys.AGENT_POS])
        np.testing.assert_array_equal(fa[keys.ENV_STATE], fb[keys.ENV_STATE])
    assert not np.array_equal(a[0][keys.ENV_STATE], c[0][keys.ENV_STATE])


def test_instructions_name_the_target():
    from genba.sim.scene import COLORS, SHAPE_WORDS

    langs = set()
    for seed in range(12):
        env = genba.sim.make("pick_place", cameras=[], lang="mixed")
        env.reset(seed=seed)
        spec = env.unwrapped.episode_spec()
        target = next(o for o in spec["objects"] if o["role"] == "object")
        text = env.unwrapped.task_description
        langs.add(spec["lang"])
        if spec["lang"] == "en":
            assert f"{target['color']} {SHAPE_WORDS[target['shape']][0]}" in text
        else:
            assert COLORS[target["color"]][0] + SHAPE_WORDS[target["shape"]][1] in text
        colors = [o["color"] for o in spec["objects"]]
        assert len(set(colors)) == len(colors)  # the colour alone tells the target apart
        assert any(o["role"] == "distractor" for o in spec["objects"])
    assert langs == {"en", "ja"}


def test_domain_randomization_is_recorded():
    a = genba.sim.make("push", cameras=[])
    b = genba.sim.make("push", cameras=[], randomize=False)
    _, ia = a.reset(seed=1)
    _, ib = b.reset(seed=1)
    pa, pb = ia[keys.INFO_PHYSICS], ib[keys.INFO_PHYSICS]
    assert pb["kp_scale"] == [1.0] * 6 and pa["kp_scale"] != pb["kp_scale"]
    assert pa["light"] != pb["light"]
    m = a.unwrapped.model
    obj = m.body("object").id
    assert np.isclose(m.body_mass[obj], pa["objects"]["object"]["mass"])
    assert a.unwrapped.episode_spec()["cameras"] != b.unwrapped.episode_spec()["cameras"]


def test_physics_blowup_truncates_with_reason():
    env = genba.sim.make("pick_place", cameras=["front"], image_size=32)
    obs0, _ = env.reset(seed=0)
    env.unwrapped.data.qvel[:] = 1e12  # corrupt the state
    obs, reward, terminated, truncated, info = env.step(obs0[keys.AGENT_POS])
    assert truncated and not terminated and reward == 0.0
    assert info[keys.INFO_TRUNCATION_REASON].startswith("physics_")
    assert all(np.isfinite(v).all() for k, v in obs.items() if k != keys.PIXELS)
    assert env.observation_space.contains(obs)
    # NaN actions are not a crash either
    env.reset(seed=0)
    obs, *_ = env.step(np.full(6, np.nan, dtype=np.float32))
    assert np.isfinite(obs[keys.AGENT_POS]).all()


def test_time_limit():
    env = genba.sim.make("reach", cameras=[], max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    for _i in range(3):
        obs, _, _terminated, truncated, info = env.step(obs[keys.AGENT_POS])
    assert truncated and info[keys.INFO_TRUNCATION_REASON] == "time_limit"


def test_ee_delta_moves_the_tip():
    env = genba.sim.make("reach", cameras=[], action_mode="ee_delta")
    assert env.action_space.shape == (5,)
    env.reset(seed=0)
    u = env.unwrapped
    tip0 = u.data.site_xpos[u.model.site("tip").id].copy()
    for _ in range(3):
        env.step(np.array([0.02, 0.0, 0.01, 0.0, 0.02], dtype=np.float32))
    tip = u.data.site_xpos[u.model.site("tip").id]
    assert tip[0] - tip0[0] > 0.04 and tip[2] - tip0[2] > 0.015


def test_judge_pose_is_the_tasks_predicate_at_another_pose():
    """reach's success read at a pose the arm is not in (what judges a world model's imagined joints): the pose
    where the expert succeeded is a success, the reset's pose is not, and the env's own state is left as it was."""
    from genba.sim.experts import make_expert

    env = genba.sim.make("reach", cameras=[])
    obs, _ = env.reset(seed=4)
    start, tip = obs[keys.AGENT_POS].copy(), env.unwrapped.tip_pos().copy()
    expert, success = make_expert("reach"), False
    for _ in range(env.unwrapped.max_episode_steps):
        obs, _, success, truncated, _ = env.step(expert.act(obs))
        if success or truncated:
            break
    assert success, "the expert reaches seed 4"
    reached = obs[keys.AGENT_POS].copy()
    env.reset(seed=4)
    assert env.unwrapped.judge_pose(reached) and not env.unwrapped.judge_pose(start)
    np.testing.assert_array_equal(env.unwrapped.tip_pos(), tip)  # restored: the reset's pose again
    off = reached.copy()
    off[0] += 0.2  # the base turned 0.2 rad away: about 3 cm to the side
    assert not env.unwrapped.judge_pose(off)
    with pytest.raises(ValueError, match=r"^q has shape \(5,\), expected \(6,\)$"):
        env.unwrapped.judge_pose(reached[:5])
    place = genba.sim.make("pick_place", cameras=[])
    place.reset(seed=0)
    with pytest.raises(ValueError, match=r"^task pick_place's success depends on objects the arm moves"):
        place.unwrapped.judge_pose(start)
