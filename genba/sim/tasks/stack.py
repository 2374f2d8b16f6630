"""stack: stack the named cube on top of another, bigger cube (slot 1: the base cube)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from genba.sim.experts import CLOSED, OPEN, Phase, ScriptedExpert, approach_and_grasp, lift, remember_height
from genba.sim.scene import Layout, SceneSampler, half_height, layout_apart
from genba.sim.tasks.task import Task

if TYPE_CHECKING:
    from genba.sim.env import GenbaEnv


def layout(s: SceneSampler, target: dict, goal_color: str) -> Layout | None:
    return layout_apart(s, target, s.solid("cube", goal_color, "goal", big=True))


def success(env: GenbaEnv) -> bool:
    """On top of the base cube, centred within 70% of its half-size, resting, released; the base still on the
    table."""
    obj, p, g = env.scene_object("object"), env.body_pos("object"), env.body_pos("goal")
    hb = env.scene_object("goal")["size"][2]
    hh = half_height(obj["shape"], obj["size"])
    on_top = np.linalg.norm(p[:2] - g[:2]) < 0.7 * hb and abs(p[2] - g[2] - hb - hh) < 0.006
    return bool(on_top and g[2] < hb + 0.005 and not env.touching_gripper("object"))


def phases(x: ScriptedExpert) -> list[Phase]:
    def over_base(s):
        return np.array([s[1, 0], s[1, 1], 0.1]), None, CLOSED

    def place_z(s):
        return 2 * s[1, 2] + x.held_h + 0.004

    def lower(s):
        return np.array([s[1, 0], s[1, 1], place_z(s)]), None, CLOSED

    def release(s):
        return x.cmd[:3].copy(), None, OPEN

    def retreat(s):
        return np.array([x.cmd[0], x.cmd[1], 0.12]), None, OPEN

    return [*approach_and_grasp(x), remember_height(x), lift(x, 0.1), Phase("over_base", over_base),
            Phase("lower", lower, speed=0.012, tol=0.004), Phase("release", release, speed=0.0, wait=3, tol=1.0),
            Phase("retreat", retreat)]  # fmt: skip


TASK = Task(
    name="stack",
    description="stack the named cube on top of another named cube",
    templates={
        "en": ("stack the {obj} on the {goal}", "put the {obj} on top of the {goal}"),
        "ja": ("{obj}を{goal}の上に積んで", "{obj}を{goal}の上に置いて"),
    },
    max_steps=80,
    object_shapes=("cube",),
    layout=layout,
    success=success,
    phases=phases,
)
