"""The vector env LeRobot evaluates: genba's registered gym env in a thin wrapper with what lerobot-eval reads.

lerobot-eval's rollout reads `_max_episode_steps` through `env.call` (gymnasium's TimeLimit has it; genba's env keeps
its own time limit as `max_episode_steps` and truncates itself, with a reason), and `task_description` / `task`,
which reach the wrapped env through `get_wrapper_attr`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym

# Per-episode info that LeRobot never reads. `physics` is a nested dict keyed by the episode's object names, which
# differ between sub-envs: the vector env would stack it into masked object arrays at every (auto)reset.
DROPPED_INFO = ("physics",)


class LeRobotGenbaEnv(gym.Wrapper):
    """A genba env as LeRobot's rollout expects it; observations, actions and `is_success` pass through unchanged."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._max_episode_steps: int = env.unwrapped.max_episode_steps

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, _lean(info)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, _lean(info)


def _lean(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in DROPPED_INFO}


def make_env(gym_id: str, gym_kwargs: dict[str, Any], disable_env_checker: bool = True) -> gym.Env:
    """One wrapped genba env; a module-level function so AsyncVectorEnv's worker processes can unpickle it."""
    import genba.sim  # noqa: F401  registers genba/<Task>-v0 (also in a fresh worker process)

    return LeRobotGenbaEnv(gym.make(gym_id, disable_env_checker=disable_env_checker, **gym_kwargs))


def make_vector_env(
    gym_id: str, gym_kwargs: dict[str, Any], n_envs: int, use_async: bool = False, disable_env_checker: bool = True
) -> gym.vector.VectorEnv:
    """n_envs copies, the way LeRobot's EnvConfig.create_envs builds its single-task envs (same-step autoreset,
    forkserver workers when asynchronous)."""
    if n_envs < 1:
        raise ValueError(f"n_envs={n_envs} must be at least 1")
    fns = [partial(make_env, gym_id, gym_kwargs, disable_env_checker) for _ in range(n_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if use_async and n_envs > 1:
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context="forkserver")
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
