"""pick_place: pick up the named object and put it in a bin (slot 1: the bin)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from genba.sim.experts import CLOSED, OPEN, Phase, ScriptedExpert, approach_and_grasp, lift, remember_height
from genba.sim.scene import BIN_INNER, Layout, SceneSampler, half_height, layout_apart
from genba.sim.tasks.task import Task

if TYPE_CHECKING:
    from genba.sim.env import GenbaEnv

BIN_RING = (0.14, 0.19)  # the bin stays well inside reach: the arm must get over its far wall


def layout(s: SceneSampler, target: dict, goal_color: str) -> Layout | None:
    goal = {"shape": "bin", "size": list(BIN_INNER), "rgba": s.shade(goal_color), "color": goal_color,
            "role": "goal", "pos": [0.0, 0.0, 0.0], "yaw": float(s.rng.uniform(-0.4, 0.4)),
            "mass": 0.0, "friction": 1.0}  # fmt: skip
    return layout_apart(s, target, goal, goal_ring=BIN_RING)


def success(env: GenbaEnv) -> bool:
    """The object inside the bin's walls, below their top, and let go of."""
    obj, goal = env.scene_object("object"), env.scene_object("goal")
    p, g = env.body_pos("object"), env.body_pos("goal")
    yaw = goal["yaw"]
    dx, dy = p[0] - g[0], p[1] - g[1]
    lx, ly = math.cos(yaw) * dx + math.sin(yaw) * dy, -math.sin(yaw) * dx + math.cos(yaw) * dy
    hx, hy, wall = goal["size"]
    inside = abs(lx) < hx and abs(ly) < hy and p[2] < wall + half_height(obj["shape"], obj["size"])
    return bool(inside and not env.touching_gripper("object"))


def phases(x: ScriptedExpert) -> list[Phase]:
    wall = BIN_INNER[2]

    def over_bin(s):
        return np.array([s[1, 0], s[1, 1], 0.1]), None, CLOSED

    def lower(s):
        return np.array([s[1, 0], s[1, 1], wall + x.held_h + 0.02]), None, CLOSED

    def release(s):
        return x.cmd[:3].copy(), None, OPEN

    def retreat(s):
        return np.array([s[1, 0], s[1, 1], 0.12]), None, OPEN

    return [*approach_and_grasp(x), remember_height(x), lift(x, 0.1), Phase("over_bin", over_bin),
            Phase("lower", lower, speed=0.015), Phase("release", release, speed=0.0, wait=3, tol=1.0),
            Phase("retreat", retreat)]  # fmt: skip


TASK = Task(
    name="pick_place",
    description="pick up the named object and put it in the bin",
    templates={
        "en": ("put the {obj} in the {goal}", "pick up the {obj} and place it in the {goal}"),
        "ja": ("{obj}を{goal}に入れて", "{obj}を持ち上げて{goal}に入れて"),
    },
    max_steps=80,
    object_shapes=("cube", "cylinder", "sphere"),
    layout=layout,
    success=success,
    phases=phases,
)
