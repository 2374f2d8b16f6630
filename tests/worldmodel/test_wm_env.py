"""The world-model env: gymnasium's check_env, the MuJoCo task's spaces, a real MuJoCo reset as its first frame, a
dataset frame as another, the success head ending episodes, and bad input as one line."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genba.sim
import genba.worldmodel
from genba import keys
from genba.datasets.clips import ClipConfig, ClipDataset
from genba.errors import GenbaError

pytestmark = pytest.mark.xdist_group("worldmodel")


def test_check_env_passes_with_the_tasks_spaces(reach_wm_run):
    env = genba.worldmodel.make_env("reach", run=reach_wm_run["run"])
    check_env(env, skip_render_check=True)
    sim = genba.sim.make("reach", image_size=64, cameras=["front", "wrist"])
    assert env.observation_space == sim.observation_space and env.action_space == sim.action_space
    assert env.max_episode_steps == sim.max_episode_steps and env.fps == sim.fps == 10
    small = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], cameras=["front"], image_size=32)
    obs, _ = small.reset(seed=5)
    assert small.observation_space == genba.sim.make("reach", image_size=32, cameras=["front"]).observation_space
    assert set(obs[keys.PIXELS]) == {"front"} and obs[keys.PIXELS]["front"].shape == (32, 32, 3)
    assert small.observation_space.contains(small.step(small.action_space.sample())[0])


def test_a_sim_reset_is_the_mujoco_reset_of_the_seed(reach_wm_run):
    env = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], lang="mixed")
    sim = genba.sim.make("reach", image_size=64, cameras=["front", "wrist"], lang="mixed")
    for seed in (3, 8):
        obs, info = env.reset(seed=seed)
        real, _ = sim.reset(seed=seed)
        for cam in ("front", "wrist"):
            np.testing.assert_array_equal(obs[keys.PIXELS][cam], real[keys.PIXELS][cam])
        np.testing.assert_array_equal(obs[keys.AGENT_POS], real[keys.AGENT_POS])
        np.testing.assert_array_equal(obs[keys.ENV_STATE], real[keys.ENV_STATE])
        assert env.task_description == sim.task_description and info[keys.INFO_SUCCESS] is False
        assert env.episode_spec() == sim.episode_spec()
    env.reset(seed=3)
    as_is = env.step(env.action_space.high)
    env.reset(seed=3, options={"instruction": "shuffled"})
    assert env.episode_spec()["original_instruction"] != env.task_description
    shuffled = env.step(env.action_space.high)  # the model reads the original instruction: success keeps its meaning
    np.testing.assert_array_equal(shuffled[0][keys.AGENT_POS], as_is[0][keys.AGENT_POS])
    assert shuffled[4]["success_prob"] == as_is[4]["success_prob"]


def test_steps_follow_the_actions_and_the_success_head_ends_episodes(reach_wm_run):
    eager = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], success_threshold=1e-6)
    obs, _ = eager.reset(seed=0)
    moved = eager.step(eager.action_space.high)
    _, reward, terminated, truncated, info = moved
    assert (reward, terminated, truncated, info[keys.INFO_SUCCESS]) == (1.0, True, False, True)
    assert 0.0 < info["success_prob"] < 1.0
    eager.reset(seed=0)
    other = eager.step(eager.action_space.low)[0]
    assert not np.array_equal(moved[0][keys.AGENT_POS], other[keys.AGENT_POS])  # the action reaches the state
    never = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], success_threshold=1 - 1e-6)
    obs, _ = never.reset(seed=0)
    for step in range(1, never.max_episode_steps + 1):
        obs, reward, terminated, truncated, info = never.step(obs[keys.AGENT_POS])
        assert never.observation_space.contains(obs) and reward == 0.0 and not terminated
        assert truncated == (step == never.max_episode_steps)
    assert info[keys.INFO_TRUNCATION_REASON] == "time_limit"


def test_success_steps_asks_for_consecutive_steps_above_the_threshold(reach_wm_run):
    env = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], success_threshold=1e-6, success_steps=3)
    obs, _ = env.reset(seed=0)
    ends = [env.step(obs[keys.AGENT_POS])[2] for _ in range(3)]
    assert ends == [False, False, True]


def test_a_dataset_reset_starts_from_the_datasets_frame(reach_wm_run):
    env = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], reset="dataset")
    obs, _ = env.reset(seed=0, options={"episode": 4, "frame": 3})
    ds = ClipDataset(ClipConfig(data=str(reach_wm_run["data"]), obs_frames=1, action_horizon=1, image_size=64,
                                extra_keys=[keys.OBS_ENV_STATE]), progress=False)  # fmt: skip
    sample = ds[int(ds.ep_from[4]) + 3]
    np.testing.assert_array_equal(obs[keys.AGENT_POS], sample[keys.OBS_STATE][0].numpy())
    np.testing.assert_array_equal(obs[keys.ENV_STATE], sample[keys.OBS_ENV_STATE][0].numpy())
    np.testing.assert_array_equal(obs[keys.PIXELS]["front"], sample[keys.image_key("front")][0].permute(1, 2, 0))
    assert env.task_description == sample[keys.TASK] and env.episode_spec()["seed"] == 4
    first, _ = env.reset(seed=11)
    again, _ = env.reset(seed=11)  # the episode is drawn from the seed
    np.testing.assert_array_equal(first[keys.AGENT_POS], again[keys.AGENT_POS])
    with pytest.raises(GenbaError, match=r"^episode=9 is not in .* \(episodes 0\.\.5\)$"):
        env.reset(seed=0, options={"episode": 9})


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [("pick_place", {}, r"was trained on reach, not task=pick_place$"),
     ("reach", {"depth": True}, r"^depth=true: the world model predicts no depth$"),
     ("reach", {"action_mode": "ee_delta"}, r"^action_mode=ee_delta: the world model was trained on joint actions$"),
     ("reach", {"fps": 30}, r"^fps=30: the world model was trained at 10 fps$"),
     ("reach", {"reset": "dream"}, r"^reset='dream' is not one of sim, dataset$"),
     ("reach", {"success_steps": 0}, r"^success_steps=0 must be an integer in \[1, 100\]$"),
     ("reach", {"judge": "oracle"}, r"^judge='oracle' is not one of head, sim$"),
     ("reach", {"judge": "sim", "reset": "dataset"}, r"^judge=sim needs reset=sim: "),
     ("reach", {"cameras": ["top"]}, r"^camera 'top' is not one the world model predicts \(front, wrist\)$")],
)  # fmt: skip
def test_bad_input_is_one_line(reach_wm_run, task, options, message):
    with pytest.raises(GenbaError, match=message) as e:
        genba.worldmodel.make_env(task, run=reach_wm_run["run"], **options)
    assert "\n" not in str(e.value)


def test_a_run_without_a_success_head_is_one_line(headless_wm_run):
    with pytest.raises(GenbaError, match=r"^world model .* has no success head, so it cannot end episodes: ") as e:
        genba.worldmodel.make_env("reach", run=headless_wm_run)
    assert "\n" not in str(e.value)


def test_judge_sim_reads_the_tasks_predicate_on_the_imagined_joints(reach_wm_run, headless_wm_run):
    """judge=sim: reach's own predicate on the imagined joints in the reset's scene decides, not the head (a
    threshold every step passes would end the episode at once); a run without a head is accepted; imagined joints
    where MuJoCo's expert succeeded end the episode as a success."""
    import copy

    import torch

    from genba.sim.experts import make_expert
    from genba.worldmodel.env import check_options

    head = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], success_threshold=1e-6)
    sim = genba.worldmodel.make_env("reach", run=reach_wm_run["run"], judge="sim", success_threshold=1e-6)
    headless = genba.worldmodel.make_env("reach", run=headless_wm_run, judge="sim")
    truth = genba.sim.make("reach", cameras=[])
    head.reset(seed=4)
    assert head.step(head.action_space.high)[2] is True  # the head at threshold 1e-6 ends it
    for env in (sim, headless):
        obs, _ = env.reset(seed=4)
        truth.reset(seed=4)
        for _ in range(3):
            obs, reward, terminated, _, info = env.step(env.action_space.high)
            assert info[keys.INFO_SUCCESS] is terminated is truth.unwrapped.judge_pose(obs[keys.AGENT_POS]) is False
    assert "success_prob" not in info  # the headless run has no head's probability to report
    real, _ = truth.reset(seed=4)  # where MuJoCo's expert succeeds, as the imagined joints of a step
    expert = make_expert("reach")
    while not (done := truth.step(expert.act(real)))[2]:
        real = done[0]
    sim.reset(seed=4)
    copy.copy(sim).reset(seed=5)  # as batched imagination resets its episodes: one shared MuJoCo env
    out = sim.model.imagine_step(sim._dream, torch.from_numpy(sim.model_action(done[0][keys.AGENT_POS]))[None])
    out["state"] = torch.from_numpy(done[0][keys.AGENT_POS])[None]
    _, reward, terminated, truncated, info = sim.stepped(out, 0)
    assert (reward, terminated, truncated, info[keys.INFO_SUCCESS]) == (1.0, True, False, True)
    with pytest.raises(GenbaError, match=r"^judge=sim: task pick_place's success depends on objects the arm moves"):
        check_options("pick_place", reach_wm_run["run"], judge="sim")
