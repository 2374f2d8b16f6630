"""The task registry: every task has every part, names and ids derive from it, and a new task is one module."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import genba.sim
from genba.errors import GenbaError
from genba.policies.rollout import rollout
from genba.policies.scripted import ScriptedPolicy
from genba.sim.bench import BenchSimConfig
from genba.sim.experts import HOVER, OPEN, Phase, make_expert
from genba.sim.scene import Layout, SceneSampler, layout_apart, sample_spec
from genba.sim.tasks import TASKS, Task, get_task
from genba.sim.tasks.task import LANGS
from genba.sim.tasks_command import TasksConfig, run_tasks

SOLIDS = {"cube", "cylinder", "sphere"}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_every_part(name):
    task = TASKS[name]
    assert isinstance(task, Task) and task.name == name
    assert task.description.strip()
    assert isinstance(task.max_steps, int) and task.max_steps > 0
    assert task.object_shapes and set(task.object_shapes) <= SOLIDS
    assert task.distractor_shapes and set(task.distractor_shapes) <= SOLIDS
    assert task.max_distractors >= 1
    assert callable(task.layout) and callable(task.success)
    phases = make_expert(name).phases
    assert phases and all(isinstance(p, Phase) for p in phases)

    spec = sample_spec(name, 0)
    roles = {o["role"]: o["slot"] for o in spec["objects"]}
    assert spec["task"] == name and roles["object"] == 0 and roles.get("goal", 1) == 1 and "distractor" in roles
    has_goal = "goal" in roles
    for lang in LANGS:  # every language, each template naming the object (and the goal when there is one)
        assert task.templates[lang]
        for template in task.templates[lang]:
            assert "{obj}" in template and ("{goal}" in template) == has_goal


def test_ids_and_names_derive_from_the_registry():
    assert genba.sim.TASKS is TASKS
    assert {name: task.gym_id for name, task in TASKS.items()} == genba.sim.GYM_IDS
    assert list(genba.sim.GYM_IDS.values()) == ["genba/Reach-v0", "genba/Push-v0", "genba/PickPlace-v0",
                                                "genba/Stack-v0"]  # fmt: skip
    for name, gym_id in genba.sim.GYM_IDS.items():
        assert gym.spec(gym_id).kwargs == {"task": name}
    assert [t["name"] for t in run_tasks(TasksConfig())["tasks"]] == list(TASKS)
    with pytest.raises(ValueError, match=f"valid: {', '.join(TASKS)}"):
        BenchSimConfig(task="juggle")
    with pytest.raises(GenbaError, match=f"valid: {', '.join(TASKS)}"):
        get_task("juggle")


def test_the_registry_imports_without_mujoco():
    code = "import sys, genba.sim.tasks; print(sorted(m for m in ('mujoco', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------- a fifth task: one module's parts + one line
def hover_layout(s: SceneSampler, target: dict, goal_color: str) -> Layout | None:
    return layout_apart(s, target)


def hover_success(env) -> bool:
    aim = env.body_pos("object").copy()
    aim[2] = HOVER
    return bool(np.linalg.norm(env.tip_pos() - aim) < 0.015)


def hover_phases(x) -> list[Phase]:
    def above(s):
        return np.array([s[0, 0], s[0, 1], HOVER]), None, OPEN

    return [Phase("above", above, tol=0.01)]


HOVER_TASK = Task(
    name="hover",
    description="hold the gripper still above the named object",
    templates={"en": ("hover over the {obj}",), "ja": ("{obj}の上で止まって",)},
    max_steps=30,
    object_shapes=("cube", "sphere"),
    layout=hover_layout,
    success=hover_success,
    phases=hover_phases,
)


def test_a_fifth_task_needs_one_module_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(TASKS, "hover", HOVER_TASK)  # the registry line
    assert HOVER_TASK.gym_id == "genba/Hover-v0"
    env = genba.sim.make("hover", cameras=[], lang="ja")
    episodes = [rollout(env, ScriptedPolicy("hover"), seed) for seed in range(3)]
    assert all(e.success for e in episodes), [e.summary() for e in episodes]
    spec = env.unwrapped.episode_spec()
    assert spec["task"] == "hover" and spec["instruction"].endswith("の上で止まって")
    assert env.unwrapped.max_episode_steps == 30
    assert {o["role"] for o in spec["objects"]} == {"object", "distractor"}
    assert "hover" in [t["name"] for t in run_tasks(TasksConfig())["tasks"]]
    assert BenchSimConfig(task="hover").task == "hover"
