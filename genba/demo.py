"""`genba demo` (what `make demo` runs): the whole pipeline on the embedded default, sized for a 2-core CPU.

At this stage: the scripted expert performs `pick_place` in MuJoCo, the episodes are written as a LeRobotDataset v3
(`genba collect`), the first episode is logged to a Rerun file (`genba viz`), the expert is evaluated through the
one episode loop on held-out seeds (`genba eval`), a tiny world model is trained on the episodes
(`genba train-worldmodel`) and evaluated on the held-out ones against copy-last-frame, with its predictions beside
reality in a second Rerun file (`genba eval-worldmodel`), then a tiny VLA is trained on the same episodes, its
backbone started from the world model's (`genba train-policy init=`), and evaluated in MuJoCo on held-out seeds with
its grounding gap (`genba eval grounding=true`), and last evaluated again on the same seeds inside the world model
(`genba eval env=worldmodel`: every frame after the MuJoCo reset imagined, the world model's success head ending
the episode; the expert's episodes are recorded `after_success` steps past the success so that the head has labels
of both outcomes). Running it again continues or reuses the dataset instead of starting
over, and reuses finished world-model and policy runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genba.errors import GenbaError

if TYPE_CHECKING:
    from genba.datasets.collect import CollectConfig
    from genba.policies.evaluate import EvalConfig
    from genba.policies.train_command import TrainPolicyConfig
    from genba.worldmodel.evaluate import EvalWorldModelConfig
    from genba.worldmodel.train_command import TrainWorldModelConfig


POLICY_STEPS = 600


@dataclass
class DemoConfig:
    out: str = field(default="outputs/demo", metadata={"help": "folder for the dataset, the .rrd and the summary"})
    task: str = field(default="pick_place", metadata={"help": "simulated task (see `genba tasks`)"})
    episodes: int = field(default=60, metadata={"help": "expert episodes to collect"})
    image_size: int = field(default=64, metadata={"help": "camera image height and width in pixels"})
    lang: str = field(default="mixed", metadata={"help": "instruction language: en, ja or mixed"})
    depth: bool = field(default=True, metadata={"help": "record depth too (gives the point cloud in the .rrd)"})
    workers: int = field(default=2, metadata={"help": "processes simulating episodes in parallel"})
    seed: int = field(default=0, metadata={"help": "seed of the first episode"})
    eval_episodes: int = field(default=10, metadata={"help": "episodes of the expert's evaluation (held-out seeds)"})
    worldmodel_steps: int = field(
        default=500, metadata={"help": "world-model training steps (0 = the tiny preset's 800; 500 fit the demo)"}
    )
    policy_steps: int = field(
        default=POLICY_STEPS, metadata={"help": f"VLA training steps (0 = no policy; {POLICY_STEPS} fit the demo)"}
    )
    policy_episodes: int = field(default=20, metadata={"help": "episodes of the VLA's evaluation (held-out seeds)"})
    after_success: int = field(
        default=5, metadata={"help": "steps recorded past each success: labels for the world model's success head"}
    )
    imagined_episodes: int = field(
        default=10,
        metadata={"help": "episodes of the last policy's evaluation again inside the world model, on the first of "
                  "the same seeds (0 = none; needs after_success > 0)"},
    )  # fmt: skip
    threads: int = field(
        default=0, metadata={"help": "torch CPU threads for the models and evaluations (0 = their defaults)"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.imagined_episodes, int) or self.imagined_episodes < 0:
            raise ValueError(f"imagined_episodes={self.imagined_episodes!r} must be an integer >= 0")
        if self.imagined_episodes and not self.after_success:
            raise ValueError("imagined_episodes > 0 needs after_success > 0 (the world model's success head learns "
                             "from the steps after each success)")  # fmt: skip
        self.collect_config()  # task, episodes, image_size, lang, workers: collect's own checks, before any work
        self.eval_config()
        self.worldmodel_configs()
        self.policy_configs()

    def collect_config(self) -> CollectConfig:
        from genba.datasets.collect import CollectConfig

        return CollectConfig(
            task=self.task,
            episodes=self.episodes,
            out=str(Path(self.out) / "dataset"),
            seed=self.seed,
            image_size=self.image_size,
            lang=self.lang,
            depth=self.depth,
            workers=self.workers,
            after_success=self.after_success,
        )

    def eval_config(self) -> EvalConfig:
        from genba.policies.evaluate import EvalConfig

        return EvalConfig(task=self.task, policy="scripted", episodes=self.eval_episodes, lang=self.lang,
                          threads=self.threads)  # fmt: skip

    def worldmodel_configs(self) -> tuple[TrainWorldModelConfig, EvalWorldModelConfig]:
        from genba.worldmodel.evaluate import EvalWorldModelConfig
        from genba.worldmodel.train_command import TrainWorldModelConfig

        run = Path(self.out) / "worldmodel"
        train = TrainWorldModelConfig(
            data=str(Path(self.out) / "dataset"),
            out=str(run),
            preset="tiny",
            steps=self.worldmodel_steps,
            val_fraction=0.2,  # 12 of 60 episodes held out, both languages among them
            seed=self.seed,
            threads=self.threads,
        )
        evaluate = EvalWorldModelConfig(run=str(run), out=str(run / "eval.json"), threads=self.threads)
        return train, evaluate

    def policy_configs(self) -> tuple[TrainPolicyConfig, EvalConfig]:
        from genba.policies.evaluate import EvalConfig
        from genba.policies.train_command import TrainPolicyConfig

        run = Path(self.out) / "vla"
        train = TrainPolicyConfig(
            data=str(Path(self.out) / "dataset"),
            out=str(run),
            preset="tiny",
            init=str(Path(self.out) / "worldmodel"),
            steps=max(self.policy_steps, 1),
            val_fraction=0.0,  # every demonstration trains the policy: MuJoCo's held-out seeds judge it
            seed=self.seed,
            threads=self.threads,
        )
        evaluate = EvalConfig(task=self.task, policy=str(run), episodes=max(self.policy_episodes, 1), lang=self.lang,
                              grounding=True, out=str(run / "eval.json"), threads=self.threads)  # fmt: skip
        return train, evaluate

    def imagined_config(self) -> EvalConfig:
        """The last MuJoCo evaluation's policy (the VLA, or the expert without one) in the world model, same seeds."""
        from genba.policies.evaluate import EvalConfig

        policy = str(Path(self.out) / "vla") if self.policy_steps else "scripted"
        real = max(self.policy_episodes, 1) if self.policy_steps else self.eval_episodes
        episodes = max(min(self.imagined_episodes, real), 1)
        return EvalConfig(task=self.task, policy=policy, episodes=episodes, lang=self.lang,
                          env="worldmodel", worldmodel=str(Path(self.out) / "worldmodel"),
                          out=str(Path(self.out) / "imagined_eval.json"), threads=self.threads)  # fmt: skip


def run_demo(cfg: DemoConfig) -> dict:
    from genba.datasets.collect import run_collect
    from genba.policies.evaluate import run_eval
    from genba.policies.train_command import SUMMARY as POLICY_SUMMARY
    from genba.policies.train_command import run_train_policy
    from genba.viz.episode import VizConfig, run_viz
    from genba.worldmodel.evaluate import run_eval_worldmodel
    from genba.worldmodel.train_command import SUMMARY, run_train_worldmodel

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise GenbaError(f"out={out} is a file, not a folder")
    dataset = out / "dataset"
    rrd = out / "episode_0.rrd"

    print(f"genba demo: 1/8 collecting {cfg.episodes} expert episodes of {cfg.task} into {dataset}", flush=True)
    collected = run_collect(cfg.collect_config())
    print(f"genba demo: 2/8 logging episode 0 to {rrd}", flush=True)
    logged = run_viz(VizConfig(data=str(dataset), episode=0, out=str(rrd)))
    print(f"genba demo: 3/8 evaluating the expert on {cfg.eval_episodes} held-out seeds", flush=True)
    evaluated = run_eval(cfg.eval_config())
    train_cfg, eval_cfg = cfg.worldmodel_configs()
    trained = _train_once(train_cfg, Path(train_cfg.out) / SUMMARY, run_train_worldmodel, "4/8", "a tiny world model")
    print("genba demo: 5/8 evaluating the world model on the held-out episodes", flush=True)
    wm = run_eval_worldmodel(eval_cfg)
    policy = policy_eval = None
    if cfg.policy_steps:
        policy_cfg, policy_eval_cfg = cfg.policy_configs()
        policy = _train_once(policy_cfg, Path(policy_cfg.out) / POLICY_SUMMARY, run_train_policy, "6/8", "a tiny VLA")
        print(f"genba demo: 7/8 evaluating the VLA on {policy_eval_cfg.episodes} held-out seeds, with its instructions "
              "and with shuffled ones", flush=True)  # fmt: skip
        policy_eval = run_eval(policy_eval_cfg)
    imagined = None
    if cfg.imagined_episodes:
        imagined_cfg = cfg.imagined_config()
        who = "the VLA" if cfg.policy_steps else "the expert"
        print(f"genba demo: 8/8 evaluating {who} again inside the world model on the first {imagined_cfg.episodes} "
              "of the same seeds", flush=True)  # fmt: skip
        imagined = run_eval(imagined_cfg)

    print(f"genba demo: dataset {dataset} ({collected['episodes']} episodes, {collected['frames']} frames)")
    print(
        f"genba demo: world model PSNR@8 {wm['psnr@8']:.2f} dB (copy-last {wm['copy_last']['psnr@8']:.2f} dB), "
        f"state MAE@8 {wm['state_mae@8']:.4f} (copy-last {wm['copy_last']['state_mae@8']:.4f}, constant velocity "
        f"{wm['const_velocity']['state_mae@8']:.4f}), ΔPSNR@8 {wm['controllability_dpsnr@8']:.2f} dB"
    )
    if policy_eval is not None:
        low, high = policy_eval["ci95"]
        print(
            f"genba demo: VLA success {policy_eval['success_rate']:.0%} (95% CI {low:.0%}-{high:.0%}) on "
            f"{policy_eval['episodes']} held-out seeds, grounding gap {policy_eval['grounding_gap']:+.0%}, "
            f"{policy_eval['latency_ms_p50']:.0f} ms per chunk"
        )
    if imagined is not None:
        real = policy_eval if policy_eval is not None else evaluated
        n = imagined["episodes"]
        agree = sum(
            a["success"] == b["success"] for a, b in zip(real["per_episode"][:n], imagined["per_episode"], strict=True)
        )
        print(
            f"genba demo: in the world model {imagined['successes']}/{n} succeed against "
            f"{sum(e['success'] for e in real['per_episode'][:n])}/{n} in MuJoCo on the same seeds (agreement "
            f"{agree}/{n}), {imagined['seconds_per_episode']:.2f} s per episode against "
            f"{real['seconds_per_episode']:.2f} s"
        )
    print(f"genba demo: view them with: .venv/bin/rerun {rrd} {wm['rrd']}")
    return {
        "dataset": str(dataset),
        "rrd": str(rrd),
        "collect": collected,
        "viz": logged,
        "eval": evaluated,
        "train_worldmodel": trained,
        "eval_worldmodel": wm,
        "train_policy": policy,
        "eval_policy": policy_eval,
        "eval_imagined": imagined,
    }


def _train_once(cfg: Any, summary_file: Path, run: Callable[[Any], dict], stage: str, what: str) -> dict:
    """A training stage: a finished run of an earlier demo is kept, an interrupted one continues."""
    if summary_file.is_file():
        print(f"genba demo: {stage} reusing {what} in {cfg.out}", flush=True)
        return json.loads(summary_file.read_text(encoding="utf-8"))
    print(f"genba demo: {stage} training {what} on the episodes into {cfg.out}", flush=True)
    cfg.resume = (Path(cfg.out) / "last").exists()
    return run(cfg)
