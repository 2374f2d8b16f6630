"""GenbaEnvConfig: LeRobot's env type `genba`, one of genba's registered tasks (genba.sim.tasks.TASKS).

Options are the genba env's own (genba.sim.config.EnvConfig), which also checks them. The env's observation maps to
LeRobot's features like this:

    pixels/<camera>     (H, W, 3) uint8   -> observation.images.<camera>
    agent_pos           (6,) float32      -> observation.state
    environment_state   (35,) float32     -> observation.environment_state
    action              (6,) joint | (5,) ee_delta

The instruction reaches the policy as `task` (lerobot-eval reads the sub-envs' `task_description`), and
`info["is_success"]` is set on reset and on every step; the episode terminates on success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE

# genba's observation keys (genba.keys); spelled out so that importing the plugin does not import genba.
PIXELS, AGENT_POS, ENV_STATE = "pixels", "agent_pos", "environment_state"


@EnvConfig.register_subclass("genba")
@dataclass
class GenbaEnvConfig(EnvConfig):
    task: str | None = "pick_place"  # a name from genba.sim.tasks.TASKS (`genba tasks` lists them)
    fps: int = 10  # control rate in Hz, genba's default (its datasets are recorded at it)
    image_size: int = 128  # side of the square camera images, pixels
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])  # a subset of front, wrist
    lang: str = "en"  # instruction language: en, ja or mixed
    randomize: bool = True  # domain randomization: lights, colours, cameras, mass, friction, gains
    action_mode: str = "joint"  # joint: 6 target joint positions; ee_delta: 5 gripper-tip deltas
    max_episode_steps: int | None = None  # time limit; None -> the task's default
    # Derived from the options in __post_init__ (any values given are replaced: they must match what the env emits).
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from genba.sim.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"Unknown genba task '{self.task}'. Available: {', '.join(TASKS)}")
        # The features are read off the env's own spaces, so they cannot drift from what it emits. Building the
        # env only checks the options (genba's messages) and makes the spaces; MuJoCo's model waits for reset().
        from genba.sim.env import GenbaEnv

        env = GenbaEnv(self.task, **self._options())
        try:
            self.features, self.features_map = _features(env.observation_space, env.action_space)
        finally:
            env.close()

    def _options(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "cameras": list(self.cameras),
            "lang": self.lang,
            "randomize": self.randomize,
            "action_mode": self.action_mode,
            "max_episode_steps": self.max_episode_steps,
            "fps": self.fps,
        }

    @property
    def package_name(self) -> str:
        return "genba.sim"  # importing it registers every task's gym id

    @property
    def gym_id(self) -> str:
        from genba.sim import GYM_IDS

        return GYM_IDS[self.task]  # genba/<Task>-v0

    @property
    def gym_kwargs(self) -> dict:
        # rgb_array: lerobot-eval renders the front camera for its episode videos
        return {**self._options(), "render_mode": "rgb_array"}

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        from lerobot_env_genba.env import make_vector_env

        vec = make_vector_env(self.gym_id, self.gym_kwargs, n_envs, use_async_envs, self.disable_env_checker)
        return {self.type: {0: vec}}


def _features(obs: gym.spaces.Dict, act: gym.spaces.Box) -> tuple[dict[str, PolicyFeature], dict[str, str]]:
    """LeRobot's `features` (env key -> PolicyFeature) and `features_map` (env key -> policy key) of a genba env."""
    features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=act.shape)}
    features_map = {ACTION: ACTION}
    for cam, space in obs.spaces.get(PIXELS, gym.spaces.Dict()).spaces.items():
        features[f"{PIXELS}/{cam}"] = PolicyFeature(type=FeatureType.VISUAL, shape=space.shape)  # (H, W, 3)
        features_map[f"{PIXELS}/{cam}"] = f"{OBS_IMAGES}.{cam}"
    features[AGENT_POS] = PolicyFeature(type=FeatureType.STATE, shape=obs[AGENT_POS].shape)
    features_map[AGENT_POS] = OBS_STATE
    features[ENV_STATE] = PolicyFeature(type=FeatureType.ENV, shape=obs[ENV_STATE].shape)
    features_map[ENV_STATE] = OBS_ENV_STATE
    return features, features_map
