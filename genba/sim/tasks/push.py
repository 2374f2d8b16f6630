"""push: push the named object onto a coloured target disc on the table (slot 1: the disc)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from genba.sim.experts import Phase, ScriptedExpert
from genba.sim.ik import natural_yaw, wrap_yaw
from genba.sim.scene import WORKSPACE_AZ, WORKSPACE_R, Layout, SceneSampler, footprint, half_height
from genba.sim.tasks.task import Task

if TYPE_CHECKING:
    from genba.sim.env import GenbaEnv


def layout(s: SceneSampler, target: dict, goal_color: str) -> Layout | None:
    """The disc anywhere, the object 5-9 cm from it with the pushing side (behind it) reachable; distractors keep
    off the line from behind the object to the disc."""
    goal = {"shape": "target", "size": [0.03, 0.0005], "rgba": s.shade(goal_color), "color": goal_color,
            "role": "goal", "pos": [0.0, 0.0, 0.0005], "yaw": 0.0, "mass": 0.0, "friction": 1.0}  # fmt: skip
    if not s.place([], goal, WORKSPACE_R):
        return None
    g = np.array(goal["pos"][:2])
    for _ in range(200):
        a = s.rng.uniform(-math.pi, math.pi)
        d = s.rng.uniform(0.05, 0.09)
        p = g + d * np.array([math.cos(a), math.sin(a)])
        behind = p + (p - g) / d * (footprint(target) + 0.03)
        r_p, r_b = np.linalg.norm(p), np.linalg.norm(behind)
        reachable = WORKSPACE_R[0] <= r_p <= WORKSPACE_R[1] and WORKSPACE_R[0] <= r_b <= WORKSPACE_R[1] + 0.005
        if reachable and abs(math.atan2(p[1], p[0])) < WORKSPACE_AZ and abs(math.atan2(*behind[::-1])) < 1.2:
            target["pos"][:2] = [float(p[0]), float(p[1])]
            return Layout([goal, target], keep_clear=(behind, g))
    return None


def success(env: GenbaEnv) -> bool:
    """The object's centre well inside the disc, still on the table."""
    obj, p, g = env.scene_object("object"), env.body_pos("object"), env.body_pos("goal")
    hh = half_height(obj["shape"], obj["size"])
    return bool(np.linalg.norm(p[:2] - g[:2]) < env.scene_object("goal")["size"][0] - 0.01 and p[2] < hh + 0.01)


def phases(x: ScriptedExpert) -> list[Phase]:
    """Push with the two pads slightly open (a 4 cm wide flat pusher across the push direction), re-approach
    from behind whenever the object has slid off the line to the goal."""
    low, ajar = 0.02, 0.008

    def direction(s):
        d = s[1, :2] - s[0, :2]
        return d / max(np.linalg.norm(d), 1e-9)

    def behind(s, extra: float):
        return s[0, :2] - direction(s) * (s[0, 2] + 0.012 + extra)  # resting z ~ the object's half-size

    def push_yaw(s):
        d = direction(s)
        return wrap_yaw(math.atan2(d[0], -d[1]), natural_yaw(*s[0, :2]), math.pi)

    def up(s):
        return np.array([x.cmd[0], x.cmd[1], 0.06]), None, ajar

    def above(s):
        return np.array([*behind(s, 0.02), 0.06]), push_yaw(s), ajar

    def down(s):
        return np.array([*behind(s, 0.02), low]), push_yaw(s), ajar

    def push(s):
        d = direction(s)
        rel = x.cmd[:2] - s[0, :2]
        lateral, along = abs(rel[0] * d[1] - rel[1] * d[0]), -float(rel @ d)
        if lateral > 0.012 or along < 0.005:  # slid off the line: back up and come again from behind
            x.restart()
            return up(s)
        if np.linalg.norm(s[1, :2] - s[0, :2]) < 0.006:
            return x.cmd[:3].copy(), None, ajar
        return np.array([*behind(s, -0.015), low]), push_yaw(s), ajar

    return [Phase("up", up, tol=0.02), Phase("above", above, tol=0.012),
            Phase("down", down, speed=0.015, tol=0.006), Phase("push", push, speed=0.01, tol=0.0)]  # fmt: skip


TASK = Task(
    name="push",
    description="push the named object onto a coloured target circle on the table",
    templates={
        "en": ("push the {obj} to the {goal}", "push the {obj} onto the {goal}"),
        "ja": ("{obj}を{goal}まで押して", "{obj}を{goal}の上に押して"),
    },
    max_steps=80,
    object_shapes=("cube", "cylinder"),
    layout=layout,
    success=success,
    phases=phases,
    distractor_shapes=("cube", "cylinder"),
)
