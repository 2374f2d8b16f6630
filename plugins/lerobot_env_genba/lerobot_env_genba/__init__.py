"""genba's simulated arm tasks as a LeRobot env plugin.

LeRobot's CLIs call `register_third_party_plugins()` before parsing their arguments; it imports this package (the
distribution's name starts with `lerobot_env_`), which registers `GenbaEnvConfig` as the env type `genba`:

    lerobot-eval --env.type=genba --env.task=pick_place --policy.path=<checkpoint> --eval.n_episodes=10

Importing this package stays light (lerobot's config classes only); genba and MuJoCo load when a config is built.
"""

from lerobot_env_genba.config import GenbaEnvConfig

__all__ = ["GenbaEnvConfig"]
