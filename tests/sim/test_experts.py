"""Scripted experts: success from observations only (physics only, no cameras, so this runs fast)."""

import time

import numpy as np
import pytest

import genba.sim
from genba import keys
from genba.errors import GenbaError
from genba.policies.rollout import rollout
from genba.policies.scripted import ScriptedPolicy
from genba.sim.experts import make_expert

TASKS = list(genba.sim.TASKS)


def success_rate(task: str, seeds: range, noise: float = 0.0) -> float:
    env = genba.sim.make(task, cameras=[])
    policy = ScriptedPolicy(task, noise=noise, seed=0)
    return float(np.mean([rollout(env, policy, s).success for s in seeds]))


@pytest.mark.parametrize("task", TASKS)
def test_expert_quick(task):
    assert success_rate(task, range(1000, 1006)) >= 5 / 6


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_expert_95_percent_over_100_seeds(task):
    """The issue's bar: >= 95% over seeds 0..99 with domain randomization (about 2-15 s per task on 2 cores)."""
    started = time.perf_counter()
    rate = success_rate(task, range(100))
    print(f"{task}: {rate:.0%} in {time.perf_counter() - started:.1f}s")
    assert rate >= 0.95


@pytest.mark.parametrize("task", ["pick_place", "push"])
def test_expert_recovers_from_noise(task):
    assert success_rate(task, range(10), noise=0.03) >= 0.7


def test_expert_contract():
    env = genba.sim.make("stack", cameras=[])
    obs, _ = env.reset(seed=0)
    expert = make_expert("stack")
    expert.reset()
    action = expert.act(obs)
    assert action.shape == (6,) and action.dtype == np.float32
    assert env.action_space.contains(action)
    # the expert acts from agent_pos + environment_state only: other keys do not change its action
    expert.reset()
    bare = expert.act({keys.AGENT_POS: obs[keys.AGENT_POS], keys.ENV_STATE: obs[keys.ENV_STATE]})
    np.testing.assert_array_equal(bare, action)
    with pytest.raises(GenbaError, match="valid"):
        make_expert("juggle")
