"""reach: move the gripper to the named object among distractors (no goal object: slot 1 stays zeros)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from genba.sim.experts import HOVER, OPEN, Phase, ScriptedExpert
from genba.sim.ik import natural_yaw
from genba.sim.scene import Layout, SceneSampler, half_height, layout_apart
from genba.sim.tasks.task import Task

if TYPE_CHECKING:
    from genba.sim.env import GenbaEnv

ABOVE = 0.02  # success: the tip 2 cm above the object's top, within 1.5 cm


def layout(s: SceneSampler, target: dict, goal_color: str) -> Layout | None:
    return layout_apart(s, target)


def success(env: GenbaEnv) -> bool:
    obj = env.scene_object("object")
    aim = env.body_pos("object") + np.array([0.0, 0.0, half_height(obj["shape"], obj["size"]) + ABOVE])
    return bool(np.linalg.norm(env.tip_pos() - aim) < 0.015)


def phases(x: ScriptedExpert) -> list[Phase]:
    def above(s):
        return np.array([s[0, 0], s[0, 1], HOVER]), natural_yaw(s[0, 0], s[0, 1]), OPEN

    def at(s):
        return np.array([s[0, 0], s[0, 1], 2 * s[0, 2] + ABOVE]), natural_yaw(s[0, 0], s[0, 1]), OPEN

    return [Phase("above", above, tol=0.015), Phase("at", at, speed=0.015, tol=0.005)]


TASK = Task(
    name="reach",
    description="move the gripper to the named object among distractors",
    templates={
        "en": ("reach for the {obj}", "move the gripper to the {obj}"),
        "ja": ("{obj}に手を伸ばして", "{obj}のところまでグリッパーを動かして"),
    },
    max_steps=40,
    object_shapes=("cube", "cylinder", "sphere"),
    layout=layout,
    success=success,
    phases=phases,
    max_distractors=3,
    arm_only_success=True,  # the tip against an object at rest where the reset put it
)
