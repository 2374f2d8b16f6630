"""Policies by name, a class of the user's own (`module.path:ClassName`), and `genba eval` running it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genba.sim as sim
from genba import keys
from genba.errors import GenbaError
from genba.policies.contract import Policy
from genba.policies.evaluate import wilson_interval
from genba.policies.registry import BUILTIN, policy_factory
from genba.policies.rollout import rollout

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_meets_the_contract_and_runs_in_the_loop(name):
    policy = policy_factory(name, task="reach")()
    assert isinstance(policy, Policy)
    env = sim.make("reach", cameras=[], max_episode_steps=5)
    episode = rollout(env, policy, seed=0)
    env.close()
    assert 1 <= episode.steps <= 5 and episode.errors == 0


def test_a_user_class_is_built_with_the_options_it_names(examples_on_path):
    make = policy_factory("user_policy:Homing", task="reach", horizon=3, image_size=99)  # image_size: not its own
    policy = make()
    assert policy.action_spec.horizon == 3
    assert make() is not policy  # a fresh instance per call (per connection)
    env = sim.make("reach", cameras=[], max_episode_steps=9)
    episode = rollout(env, policy, seed=0, record=True)
    env.close()
    assert episode.steps == 9 and episode.requests == 3 and policy.resets == 1
    assert (
        np.abs(
            episode.frames[keys.ACTION][-1] - policy.infer({keys.OBS_STATE: np.zeros(6, np.float32)})[keys.ACTIONS][-1]
        ).max()
        < 1.0
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_xyz:Policy", r"cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        ("user_policy:Missing", r"module 'user_policy' has no class 'Missing'"),
        ("user_policy:HOME", r"module 'user_policy' has no class 'HOME'"),  # an array, not a class
        ("json:JSONDecoder", r"JSONDecoder is not a genba policy: it has no input_spec, action_spec, reset, infer"),
        ("juggler", r"unknown policy 'juggler' \(valid: scripted, linear, hold, random, or module\.path:ClassName"),
    ],
)
def test_bad_policy_names_are_one_line_errors(examples_on_path, name, message):
    with pytest.raises(GenbaError, match=message) as info:
        policy_factory(name)
    assert "\n" not in str(info.value)


def test_wilson_interval():
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.69 < low < 0.73  # 95% Wilson lower bound at 10/10: 0.722
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.16 < high < 0.17  # 0.161
    low, high = wilson_interval(50, 100)
    assert abs(low - 0.404) < 1e-3 and abs(high - 0.596) < 1e-3


def test_genba_eval_runs_a_user_class_with_one_override(tmp_path):
    out = tmp_path / "eval.json"
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    cmd = [sys.executable, "-m", "genba", "eval", "task=reach", "policy=user_policy:Homing", "episodes=3", f"out={out}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 3 and summary["policy"] == "Homing"
    assert [e["seed"] for e in summary["per_episode"]] == [1_000_000, 1_000_001, 1_000_002]
    low, high = summary["ci95"]
    assert 0 <= low <= summary["success_rate"] <= high <= 1


def test_genba_eval_of_the_expert_succeeds():
    from genba.policies.evaluate import EvalConfig, run_eval

    summary = run_eval(EvalConfig(task="reach", policy="scripted", episodes=4))
    assert summary["successes"] == 4 and summary["ci95"][1] == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [("task=juggle", "unknown task 'juggle'"), ("lang=fr", "lang='fr'"), ("episodes=0", "episodes=0"),
     ("policy=nope:X", "cannot import 'nope'")],
)  # fmt: skip
def test_genba_eval_bad_input_is_one_line(capsys, override, message):
    from genba.cli import main

    assert main(["eval", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
