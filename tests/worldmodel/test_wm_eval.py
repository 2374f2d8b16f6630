"""`genba eval env=worldmodel worldmodel=<run>`: the same seeds, scenes and report keys as in MuJoCo through the one
episode loop, outcomes independent of the worker count, wall-clock seconds for both backends, bad input as one line."""

import json

import pytest

from genba.policies.evaluate import EvalConfig, run_eval

pytestmark = pytest.mark.xdist_group("worldmodel")


def test_the_world_model_eval_reports_what_the_mujoco_one_does(reach_wm_run, capsys):
    common = dict(task="reach", policy="scripted", episodes=2, workers=1, lang="mixed")
    mujoco = run_eval(EvalConfig(**common))
    dream = run_eval(EvalConfig(**common, env="worldmodel", worldmodel=str(reach_wm_run["run"])))
    assert set(dream) == set(mujoco) | {"worldmodel", "judge", "success_threshold", "success_steps", "batch"}
    assert (mujoco["backend"], dream["backend"]) == ("mujoco", "worldmodel")
    assert dream["seeds"] == mujoco["seeds"] == [1_000_000, 1_000_001]
    assert [e["task"] for e in dream["per_episode"]] == [e["task"] for e in mujoco["per_episode"]]  # same scenes
    assert set(dream["per_episode"][0]) == set(mujoco["per_episode"][0])
    for summary in (mujoco, dream):
        assert summary["seconds"] > summary["seconds_per_episode"] > 0
    assert all(e["episode_seconds"] >= e["seconds"] > 0 for e in mujoco["per_episode"])  # the reset included
    assert dream["batch"] == 2  # both episodes in one batch: each takes its share of the batch's wall clock
    assert sum(e["episode_seconds"] for e in dream["per_episode"]) >= max(e["seconds"] for e in dream["per_episode"])
    # an untrained head's verdicts: whatever they are, the episodes end by it or by the time limit
    for e in dream["per_episode"]:
        assert e["success"] or (e["steps"], e["truncation_reason"]) == (40, "time_limit")
    assert f"in the world model {reach_wm_run['run']}" in capsys.readouterr().err


def test_outcomes_do_not_depend_on_the_worker_count(reach_wm_run):
    common = dict(task="reach", policy="scripted", episodes=2, env="worldmodel", worldmodel=str(reach_wm_run["run"]))
    one, two = run_eval(EvalConfig(**common, workers=1)), run_eval(EvalConfig(**common, workers=2))
    fields = ("seed", "success", "steps", "task", "truncation_reason")
    assert [[e[k] for k in fields] for e in one["per_episode"]] == [[e[k] for k in fields] for e in two["per_episode"]]


def test_the_success_rule_reaches_the_world_model_env(reach_wm_run):
    common = dict(task="reach", policy="hold", episodes=2, workers=1, env="worldmodel",
                  worldmodel=str(reach_wm_run["run"]))  # fmt: skip
    eager = run_eval(EvalConfig(**common, success_threshold=1e-6, success_steps=3))
    assert [(e["success"], e["steps"]) for e in eager["per_episode"]] == [(True, 3)] * 2
    assert (eager["success_threshold"], eager["success_steps"]) == (1e-6, 3)
    never = run_eval(EvalConfig(**common, success_threshold=1 - 1e-9))
    assert [(e["success"], e["steps"]) for e in never["per_episode"]] == [(False, 40)] * 2
    with pytest.raises(ValueError, match=r"^judge=, success_threshold=, success_steps= and batch= are the world mod"):
        EvalConfig(task="reach", policy="hold", success_steps=2)  # MuJoCo has its own success predicate


def test_judge_sim_needs_no_success_head(headless_wm_run, capsys):
    from genba.cli import main

    common = ["eval", "task=reach", "policy=hold", "episodes=2", "workers=1", "env=worldmodel",
              f"worldmodel={headless_wm_run}"]  # fmt: skip
    assert main([*common, "judge=sim", f"out={headless_wm_run.parent / 'sim.json'}"]) == 0
    summary = json.loads((headless_wm_run.parent / "sim.json").read_text())
    assert summary["judge"] == "sim"  # hold stays at the reset's pose, away from the object: never a success
    assert [(e["success"], e["steps"]) for e in summary["per_episode"]] == [(False, 40)] * 2
    capsys.readouterr()
    assert main([*common, "task=pick_place", "judge=sim"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "judge=sim: task pick_place's success depends on objects the arm" in err


@pytest.mark.parametrize(
    ("override", "message"),
    [("task=pick_place", "was trained on reach, not task=pick_place"),
     ("worldmodel=", "env=worldmodel needs worldmodel=<run folder>, and worldmodel= needs env=worldmodel"),
     ("env=dream", "env='dream' is not one of mujoco, worldmodel"),
     ("success_steps=0", "success_steps=0 must be an integer in [1, 100]"),
     ("judge=oracle", "judge='oracle' is not one of head, sim"),]
)  # fmt: skip
def test_bad_input_is_one_line_before_any_episode(reach_wm_run, capsys, override, message):
    from genba.cli import main

    argv = ["eval", "task=reach", "policy=scripted", "episodes=1", "env=worldmodel",
            f"worldmodel={reach_wm_run['run']}", override]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_run_without_a_success_head_is_refused_in_one_line(headless_wm_run, capsys):
    from genba.cli import main

    assert main(["eval", "task=reach", "policy=scripted", "env=worldmodel", f"worldmodel={headless_wm_run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no success head, so it cannot end episodes" in err, err
