"""The one episode loop: experts unchanged through it, chunks executed n_action_steps at a time, the same actions
in simulation and through the server's robot client."""

import numpy as np
import pytest

import genba.sim as sim
from genba import keys
from genba.errors import GenbaError
from genba.policies.rollout import rollout
from genba.policies.scripted import ScriptedPolicy
from genba.policies.simple import LinearPolicy
from genba.sim.experts import make_expert


def _by_hand(task: str, seed: int, noise: float = 0.0) -> tuple[bool, np.ndarray]:
    """The expert stepped directly, with no loop of genba's in between."""
    env = sim.make(task, cameras=[])
    expert, actions = make_expert(task, noise=noise, seed=seed), []
    obs, _ = env.reset(seed=seed)
    expert.reset()
    success = False
    while True:
        actions.append(expert.act(obs))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        success = success or info[keys.INFO_SUCCESS]
        if terminated or truncated:
            break
    env.close()
    return bool(success), np.array(actions)


@pytest.mark.parametrize("task", ["reach", "push", "pick_place", "stack"])
def test_experts_through_the_loop_are_bit_identical(task):
    env = sim.make(task, cameras=[])
    for seed, noise in [(0, 0.0), (1, 0.0), (2, 0.03)]:
        success, expected = _by_hand(task, seed, noise)
        episode = rollout(env, ScriptedPolicy(task, noise=noise, seed=seed), seed, record=True)
        assert episode.success == success and episode.steps == len(expected)
        np.testing.assert_array_equal(episode.frames[keys.ACTION], expected)
        assert episode.requests == episode.steps and episode.holds == 0  # H = 1: one request per step
    env.close()


class Recording(LinearPolicy):
    """The linear policy (H = 6), remembering the chunks it answered and the step counter at each call."""

    def __init__(self) -> None:
        super().__init__(horizon=6)
        self.chunks: list[np.ndarray] = []

    def infer(self, obs):
        out = super().infer(obs)
        self.chunks.append(out[keys.ACTIONS])
        return out


@pytest.mark.parametrize("n_action_steps", [1, 4, 6])
def test_chunks_are_executed_n_action_steps_at_a_time(n_action_steps):
    env = sim.make("reach", cameras=[], max_episode_steps=13)
    policy = Recording()
    episode = rollout(env, policy, seed=0, n_action_steps=n_action_steps, record=True)
    assert episode.steps == 13 and episode.truncation_reason == "time_limit"
    assert len(policy.chunks) == -(-13 // n_action_steps) == episode.requests
    expected = np.concatenate([c[:n_action_steps] for c in policy.chunks])[:13]
    np.testing.assert_array_equal(episode.frames[keys.ACTION], expected)
    # frame t is the observation before action t: the state the chunk was computed from
    first = policy.chunks[0][0] - (policy.chunks[0][1] - policy.chunks[0][0])  # row 0 = state + step
    np.testing.assert_allclose(episode.frames[keys.OBS_STATE][0], first, atol=1e-6)
    env.close()


def test_blending_mixes_the_overlap_from_old_to_new():
    env = sim.make("reach", cameras=[], max_episode_steps=8)
    policy = Recording()
    episode = rollout(env, policy, seed=0, n_action_steps=4, blend=2, record=True)
    old, new = policy.chunks[0], policy.chunks[1]  # the second asked at step 4, with 2 rows of the first left
    np.testing.assert_allclose(episode.frames[keys.ACTION][4], (2 / 3) * old[4] + (1 / 3) * new[0], rtol=1e-6)
    np.testing.assert_allclose(episode.frames[keys.ACTION][5], (1 / 3) * old[5] + (2 / 3) * new[1], rtol=1e-6)
    np.testing.assert_array_equal(episode.frames[keys.ACTION][6], new[2])
    env.close()


def test_a_policy_needing_an_input_the_env_lacks_is_one_clear_error():
    env = sim.make("reach", cameras=[])
    with pytest.raises(GenbaError, match=r"missing key 'observation\.images\.front'"):
        rollout(env, LinearPolicy(cameras=["front"], image_size=32), seed=0)
    env.close()


def test_recorded_frames_hold_every_camera_and_depth():
    env = sim.make("reach", cameras=["front", "wrist"], image_size=32, depth=True, max_episode_steps=3)
    episode = rollout(env, ScriptedPolicy("reach"), seed=0, record=True)
    frames = episode.frames
    assert frames[keys.image_key("wrist")].shape == (3, 32, 32, 3) and frames[keys.image_key("wrist")].dtype == np.uint8
    assert frames[keys.depth_key("front")].shape == (3, 32, 32, 1)
    assert frames[keys.OBS_ENV_STATE].shape[0] == frames[keys.ACTION].shape[0] == 3
    assert episode.task and keys.TASK not in frames
    env.close()
