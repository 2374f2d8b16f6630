"""genba.sim: a MuJoCo arm modelled on the SO-101, four language-conditioned tasks, scripted experts.

    import genba.sim
    env = genba.sim.make("pick_place", image_size=128, lang="ja")   # or gymnasium.make("genba/PickPlace-v0")
    obs, info = env.reset(seed=0)
    from genba.sim.experts import make_expert; expert = make_expert("pick_place")

Layouts and units: genba.sim.env (observation, action), genba.sim.model (arm, gripper), genba.sim.scene (env state).
Importing this package registers the gymnasium ids genba/Reach-v0, genba/Push-v0, genba/PickPlace-v0, genba/Stack-v0.
"""

from __future__ import annotations

from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.sim.config import EnvConfig
from genba.sim.scene import TASKS

GYM_IDS = {"reach": "genba/Reach-v0", "push": "genba/Push-v0", "pick_place": "genba/PickPlace-v0",
           "stack": "genba/Stack-v0"}  # fmt: skip

__all__ = ["GYM_IDS", "TASKS", "EnvConfig", "make", "rollout"]


def make(name: str, **overrides: Any):  # -> gymnasium.Env
    """The env of task `name` (see TASKS) with EnvConfig overrides; unknown names or fields -> GenbaError."""
    import dataclasses

    if name not in TASKS:
        raise GenbaError(f"unknown task {name!r} (valid: {', '.join(TASKS)})")
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(overrides) - fields - {"render_mode"})
    if unknown:
        raise GenbaError(f"unknown env option(s) {', '.join(unknown)} (valid: {', '.join(sorted(fields))})")
    from genba.sim.env import GenbaEnv

    try:
        return GenbaEnv(name, **overrides)
    except ValueError as e:
        raise GenbaError(str(e)) from None


def rollout(env, policy, seed: int, max_steps: int | None = None) -> dict:
    """Run one episode of `policy` (reset(), act(obs) -> action) in `env`; returns a summary of the episode."""
    obs, info = env.reset(seed=seed)
    policy.reset()
    steps, success, reason = 0, False, ""
    limit = max_steps or env.unwrapped.max_episode_steps
    while steps < limit:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        steps += 1
        success = success or bool(info.get(keys.INFO_SUCCESS, False))
        if terminated or truncated:
            reason = info.get(keys.INFO_TRUNCATION_REASON, "")
            break
    return {"seed": seed, "success": success, "steps": steps, "truncation_reason": reason}


def _register() -> None:
    import gymnasium as gym

    for task, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point="genba.sim.env:GenbaEnv", kwargs={"task": task})


_register()
