"""Task: everything that makes one simulated task what it is; the env, the scene sampler and the expert ask it.

A task module (genba/sim/tasks/<name>.py) defines its parts and one `TASK = Task(...)`; genba.sim.tasks.TASKS
registers it. The parts:

    layout(sampler, target, goal_color) -> Layout | None
        create the task's goal object (if any) and place it and the named object `target` (already drawn, shape
        from `object_shapes`) on the table with the sampler's draws; None when there was no room (the scene is
        drawn again). Distractors, slots, the instruction, physics and cameras are the shared sampler's job.
    templates[lang]   instruction templates with {obj} (and {goal}), for every language ("en", "ja")
    success(env)      the task's success predicate, read through GenbaEnv.body_pos / tip_pos / scene_object /
                      touching_gripper
    phases(expert)    the scripted expert's plan: a list of genba.sim.experts.Phase, built on the expert it drives
    max_steps         time limit at 10 fps (the env keeps the same seconds at other rates)
    arm_only_success  whether `success` reads only the arm's pose and objects the arm does not move (reach), so that
                      GenbaEnv.judge_pose can judge a pose the arm never reached in MuJoCo (a world model's imagined
                      joints: genba.worldmodel.env's judge=sim)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing the env here would import MuJoCo with the registry
    from genba.sim.env import GenbaEnv
    from genba.sim.experts import Phase, ScriptedExpert
    from genba.sim.scene import Layout, SceneSampler

LANGS = ("en", "ja")  # the instruction languages every task speaks


@dataclass(frozen=True)
class Task:
    name: str
    description: str  # one line, shown by `genba tasks`
    templates: dict[str, tuple[str, ...]]
    max_steps: int
    object_shapes: tuple[str, ...]  # shapes the named object may take
    layout: Callable[[SceneSampler, dict, str], Layout | None]
    success: Callable[[GenbaEnv], bool]
    phases: Callable[[ScriptedExpert], list[Phase]]
    distractor_shapes: tuple[str, ...] = ("cube", "cylinder", "sphere")
    max_distractors: int = 2  # each episode has 1..max_distractors
    arm_only_success: bool = False

    @property
    def gym_id(self) -> str:
        """genba/<CamelName>-v0, e.g. genba/PickPlace-v0."""
        return "genba/" + "".join(word.capitalize() for word in self.name.split("_")) + "-v0"
