"""`genba demo` (what `make demo` runs): the whole pipeline on the embedded default, sized for a 2-core CPU.

At this stage: the scripted expert performs `pick_place` in MuJoCo, the episodes are written as a LeRobotDataset v3
(`genba collect`), the first episode is logged to a Rerun file (`genba viz`), the expert is evaluated through the
one episode loop on held-out seeds (`genba eval`), a tiny world model is trained on the episodes
(`genba train-worldmodel`) and evaluated on the held-out ones against copy-last-frame, with its predictions beside
reality in a second Rerun file (`genba eval-worldmodel`). Running it again continues or reuses the dataset instead
of starting over, and reuses a finished world-model run. Later stages (policy) append themselves here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genba.errors import GenbaError

if TYPE_CHECKING:
    from genba.datasets.collect import CollectConfig
    from genba.policies.evaluate import EvalConfig
    from genba.worldmodel.evaluate import EvalWorldModelConfig
    from genba.worldmodel.train_command import TrainWorldModelConfig


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
    threads: int = field(default=0, metadata={"help": "torch CPU threads for the world model (0 = torch's default)"})

    def __post_init__(self) -> None:
        self.collect_config()  # task, episodes, image_size, lang, workers: collect's own checks, before any work
        self.eval_config()
        self.worldmodel_configs()

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
        )

    def eval_config(self) -> EvalConfig:
        from genba.policies.evaluate import EvalConfig

        return EvalConfig(task=self.task, policy="scripted", episodes=self.eval_episodes, lang=self.lang)

    def worldmodel_configs(self) -> tuple[TrainWorldModelConfig, EvalWorldModelConfig]:
        from genba.worldmodel.evaluate import EvalWorldModelConfig
        from genba.worldmodel.train_command import TrainWorldModelConfig

        run = Path(self.out) / "worldmodel"
        train = TrainWorldModelConfig(
            data=str(Path(self.out) / "dataset"),
            out=str(run),
            preset="tiny",
            steps=self.worldmodel_steps,
            val_fraction=0.2,  # 12 of 60 episodes held out: enough per language for the retrieval check
            seed=self.seed,
            threads=self.threads,
        )
        evaluate = EvalWorldModelConfig(run=str(run), out=str(run / "eval.json"), threads=self.threads)
        return train, evaluate


def run_demo(cfg: DemoConfig) -> dict:
    from genba.datasets.collect import run_collect
    from genba.policies.evaluate import run_eval
    from genba.viz.episode import VizConfig, run_viz
    from genba.worldmodel.evaluate import run_eval_worldmodel
    from genba.worldmodel.train_command import SUMMARY, run_train_worldmodel

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise GenbaError(f"out={out} is a file, not a folder")
    dataset = out / "dataset"
    rrd = out / "episode_0.rrd"

    print(f"genba demo: 1/5 collecting {cfg.episodes} expert episodes of {cfg.task} into {dataset}", flush=True)
    collected = run_collect(cfg.collect_config())
    print(f"genba demo: 2/5 logging episode 0 to {rrd}", flush=True)
    logged = run_viz(VizConfig(data=str(dataset), episode=0, out=str(rrd)))
    print(f"genba demo: 3/5 evaluating the expert on {cfg.eval_episodes} held-out seeds", flush=True)
    evaluated = run_eval(cfg.eval_config())
    train_cfg, eval_cfg = cfg.worldmodel_configs()
    summary_file = Path(train_cfg.out) / SUMMARY
    if summary_file.is_file():  # a finished run of an earlier demo: keep it
        print(f"genba demo: 4/5 reusing the world model in {train_cfg.out}", flush=True)
        trained = json.loads(summary_file.read_text(encoding="utf-8"))
    else:
        print(f"genba demo: 4/5 training a tiny world model on the episodes into {train_cfg.out}", flush=True)
        train_cfg.resume = (Path(train_cfg.out) / "last").exists()  # an interrupted demo continues its run
        trained = run_train_worldmodel(train_cfg)
    print("genba demo: 5/5 evaluating the world model on the held-out episodes", flush=True)
    wm = run_eval_worldmodel(eval_cfg)

    print(f"genba demo: dataset {dataset} ({collected['episodes']} episodes, {collected['frames']} frames)")
    print(
        f"genba demo: world model PSNR@8 {wm['psnr@8']:.2f} dB (copy-last {wm['copy_last']['psnr@8']:.2f} dB), "
        f"state MAE@8 {wm['state_mae@8']:.4f} (copy-last {wm['copy_last']['state_mae@8']:.4f}, constant velocity "
        f"{wm['const_velocity']['state_mae@8']:.4f}), ΔPSNR@8 {wm['controllability_dpsnr@8']:.2f} dB"
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
    }
