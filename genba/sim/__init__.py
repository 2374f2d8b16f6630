"""genba.sim: a MuJoCo arm modelled on the SO-101, language-conditioned tasks, scripted experts.

    import genba.sim
    env = genba.sim.make("pick_place", image_size=128, lang="ja")   # or gymnasium.make("genba/PickPlace-v0")
    obs, info = env.reset(seed=0)
    from genba.sim.experts import make_expert; expert = make_expert("pick_place")

The tasks are registered in genba.sim.tasks (TASKS, re-exported here; GYM_IDS derives from it). Layouts and units:
genba.sim.env (observation, action), genba.sim.model (arm, gripper), genba.sim.scene (env state).
Importing this package registers each task's gymnasium id (genba/Reach-v0, genba/Push-v0, genba/PickPlace-v0,
genba/Stack-v0).
"""

from __future__ import annotations

from typing import Any

from genba.errors import GenbaError
from genba.sim.config import EnvConfig
from genba.sim.tasks import TASKS, get_task

GYM_IDS = {name: task.gym_id for name, task in TASKS.items()}

__all__ = ["GYM_IDS", "TASKS", "EnvConfig", "make"]


def make(name: str, **overrides: Any):  # -> gymnasium.Env
    """The env of task `name` (see TASKS) with EnvConfig overrides; unknown names or fields -> GenbaError."""
    import dataclasses

    get_task(name)
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(overrides) - fields - {"render_mode"})
    if unknown:
        raise GenbaError(f"unknown env option(s) {', '.join(unknown)} (valid: {', '.join(sorted(fields))})")
    from genba.sim.env import GenbaEnv

    try:
        return GenbaEnv(name, **overrides)
    except ValueError as e:
        raise GenbaError(str(e)) from None


def _register() -> None:
    import gymnasium as gym

    for task, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point="genba.sim.env:GenbaEnv", kwargs={"task": task})


_register()
