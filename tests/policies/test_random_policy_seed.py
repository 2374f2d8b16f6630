"""The `random` policy's actions are a function of the episode's seed alone: the same in an episode run first or after
others (one process running several of an evaluation's episodes, a worker's batch), whatever seed the registry was
given, as genba eval's workers and genba collect run an episode (seed_everything, then the one loop)."""

from __future__ import annotations

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.policies.evaluate import EVAL_SEED
from genba.policies.registry import policy_factory
from genba.policies.rollout import rollout, seed_everything
from genba.policies.simple import RandomPolicy
from genba.sim import make
from genba.sim.model import JOINT_LIMITS


@pytest.fixture(scope="module")
def env():
    made = make("reach", cameras=[], randomize=True)
    yield made
    made.close()


def _actions(env, policy, seed: int) -> np.ndarray:
    """(T, 6) actions of `policy` from `seed`, run as an eval worker runs an episode."""
    seed_everything(seed)
    return rollout(env, policy, seed, record=True).frames[keys.ACTION]


def test_an_episode_of_a_seed_is_the_same_first_or_after_others(env):
    policy = policy_factory("random", task="reach", seed=EVAL_SEED)()
    first = _actions(env, policy, EVAL_SEED + 1)
    _actions(env, policy, EVAL_SEED)  # another episode in the same process
    after = _actions(env, policy, EVAL_SEED + 1)
    elsewhere = _actions(env, policy_factory("random", task="reach", seed=EVAL_SEED + 1)(), EVAL_SEED + 1)
    np.testing.assert_array_equal(first, after)
    np.testing.assert_array_equal(first, elsewhere)  # an evaluation whose first seed is this one
    other = _actions(env, policy, EVAL_SEED + 2)
    n = min(len(first), len(other))
    assert len(first) > 1 and not np.allclose(first[:n], other[:n])  # but another seed, other actions
    assert ((first >= JOINT_LIMITS[:, 0]) & (first <= JOINT_LIMITS[:, 1])).all()  # uniform within the limits


def test_a_given_seed_is_still_one_stream_and_random_takes_no_seed_option():
    a, b = RandomPolicy(np.zeros(2), np.ones(2), seed=7), RandomPolicy(np.zeros(2), np.ones(2), seed=7)
    for policy in (a, b):
        policy.reset()
    first = a.infer({})[keys.ACTIONS]
    np.testing.assert_array_equal(first, b.infer({})[keys.ACTIONS])  # seeded once, not from the global generator
    a.reset()
    assert not np.array_equal(first, a.infer({})[keys.ACTIONS])  # the stream goes on over episodes
    with pytest.raises(GenbaError, match="random takes no option 'seed'"):
        policy_factory("random:seed=3")
