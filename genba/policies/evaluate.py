"""`genba eval`: a policy's success rate on a simulated task, through the one episode loop, with a 95% interval.

    genba eval task=pick_place policy=scripted episodes=50
    genba eval task=reach policy=my_lab.policies:Grasper episodes=100 n_action_steps=8
    genba eval task=reach policy=lerobot:runs/act-reach episodes=50          # a LeRobot checkpoint

The env renders what the policy's input spec asks for: the cameras it names, at the size it names; a policy that
reads anything a genba env cannot give (a camera other than front/wrist, a state of another size) is a one-line
error before any episode. Episode i uses seed `seed + i`; the default first seed (1,000,000) keeps evaluation away
from `genba collect`'s training seeds (0 upwards), and every seed is recorded in the summary. The interval is
Wilson's score interval, which stays inside [0, 1] and is honest at 0% and 100%, where the normal approximation
collapses to a point.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from genba import keys

EVAL_SEED = 1_000_000  # far above the seeds collect uses by default (0, 1, ...)


@dataclass
class EvalConfig:
    task: str = field(default="pick_place", metadata={"help": "simulated task (see `genba tasks`)"})
    policy: str = field(
        default="scripted",
        metadata={"help": "scripted | linear | hold | random, lerobot:<checkpoint folder>, or module.path:ClassName"},
    )
    episodes: int = field(default=20, metadata={"help": "episodes to run"})
    seed: int = field(default=EVAL_SEED, metadata={"help": "seed of the first episode; episode i uses seed + i"})
    n_action_steps: int | None = field(
        default=None, metadata={"help": "rows of each action chunk executed before the next; null: all of them"}
    )
    blend: int = field(default=0, metadata={"help": "steps over which an overlapping new chunk is blended in"})
    lang: str = field(default="en", metadata={"help": "instruction language: en, ja or mixed"})
    randomize: bool = field(default=True, metadata={"help": "domain randomization of each episode's scene"})
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/eval-<time>.json)"})

    def __post_init__(self) -> None:
        from genba.sim.config import LANGS
        from genba.sim.tasks import TASKS  # the registry alone: no MuJoCo

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (valid: {', '.join(TASKS)})")
        if self.lang not in LANGS:
            raise ValueError(f"lang={self.lang!r} is not one of {', '.join(LANGS)}")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes={self.episodes!r} must be an integer >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"n_action_steps={self.n_action_steps!r} must be >= 1 (or null)")
        if self.blend < 0:
            raise ValueError(f"blend={self.blend!r} must be >= 0")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def env_options(policy: Any) -> dict[str, Any]:
    """The cameras, image size and depth a policy's input spec asks for (no cameras: nothing is rendered); a one-line
    GenbaError naming both sides when it reads anything a genba env cannot give (checked before any episode)."""
    from genba.errors import GenbaError
    from genba.sim.arm import PROVIDES, provides

    prefix, depth_prefix = keys.OBS_IMAGES + ".", keys.OBS_DEPTH + "."
    for key, feat in policy.input_spec.features.items():
        if feat.required and not provides(key, feat.dtype, feat.shape):
            from genba.policies.contract import policy_name

            dims = "x".join(str(n) for n in feat.shape)
            raise GenbaError(
                f"{policy_name(policy)} reads {key} {feat.dtype}" + (f"[{dims}]" if dims else "")
                + f"; a genba env gives {PROVIDES}"
            )  # fmt: skip
    images = {
        k: f.shape
        for k, f in policy.input_spec.features.items()
        if k.startswith((prefix, depth_prefix))
        and provides(k, f.dtype, f.shape)  # an optional camera it lacks: not given
    }
    cams = list(dict.fromkeys(k.split(".", 2)[2] for k in images))
    sizes = {shape[:2] for shape in images.values()}
    if len(sizes) > 1 or any(h != w for h, w in sizes):
        raise GenbaError(
            f"the policy asks for images of shapes {sorted(sizes)}; genba's cameras render one square size"
        )
    depth = any(k.startswith(depth_prefix) for k in images)
    return {"cameras": cams, **({"image_size": sizes.pop()[0]} if sizes else {}), **({"depth": True} if depth else {})}


def run_eval(cfg: EvalConfig) -> dict:
    from tqdm import tqdm

    from genba.policies.contract import policy_name
    from genba.policies.registry import policy_factory
    from genba.policies.rollout import rollout
    from genba.sim import make

    policy = policy_factory(cfg.policy, task=cfg.task, seed=cfg.seed)()
    env = make(cfg.task, lang=cfg.lang, randomize=cfg.randomize, **env_options(policy))
    episodes = []
    try:
        bar = tqdm(range(cfg.seed, cfg.seed + cfg.episodes), desc=f"eval {cfg.task}", unit="ep", file=sys.stderr)
        for seed in bar:
            episode = rollout(env, policy, seed, n_action_steps=cfg.n_action_steps, blend=cfg.blend)
            episodes.append(episode.summary())
            bar.set_postfix(success=f"{sum(e['success'] for e in episodes)}/{len(episodes)}")
    finally:
        env.close()
    wins = sum(e["success"] for e in episodes)
    low, high = wilson_interval(wins, len(episodes))
    last = cfg.seed + cfg.episodes - 1
    rate = f"{wins}/{len(episodes)} = {wins / len(episodes):.1%} (95% CI {low:.1%}-{high:.1%})"
    print(f"{policy_name(policy)} on {cfg.task}: {rate}, seeds {cfg.seed}..{last}", file=sys.stderr)
    return {
        "policy": policy_name(policy),
        "task": cfg.task,
        "episodes": len(episodes),
        "successes": wins,
        "success_rate": wins / len(episodes),
        "ci95": [round(low, 4), round(high, 4)],
        "seeds": [cfg.seed, last],
        "mean_steps": sum(e["steps"] for e in episodes) / len(episodes),
        "per_episode": episodes,
        "config": asdict(cfg),
    }
