"""`genba demo` (what `make demo` runs): the whole pipeline on the embedded default, sized for a 2-core CPU.

At this stage: the scripted expert performs `pick_place` in MuJoCo, the episodes are written as a LeRobotDataset v3
(`genba collect`), the first episode is logged to a Rerun file (`genba viz`), and the expert is evaluated through the
one episode loop on held-out seeds (`genba eval`). Running it again continues or reuses the dataset instead of
starting over. Later stages (world model, policy) append themselves here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genba.errors import GenbaError

if TYPE_CHECKING:
    from genba.datasets.collect import CollectConfig
    from genba.policies.evaluate import EvalConfig


@dataclass
class DemoConfig:
    out: str = field(default="outputs/demo", metadata={"help": "folder for the dataset, the .rrd and the summary"})
    task: str = field(default="pick_place", metadata={"help": "simulated task (see `genba tasks`)"})
    episodes: int = field(default=6, metadata={"help": "expert episodes to collect"})
    image_size: int = field(default=128, metadata={"help": "camera image height and width in pixels"})
    lang: str = field(default="mixed", metadata={"help": "instruction language: en, ja or mixed"})
    depth: bool = field(default=True, metadata={"help": "record depth too (gives the point cloud in the .rrd)"})
    workers: int = field(default=2, metadata={"help": "processes simulating episodes in parallel"})
    seed: int = field(default=0, metadata={"help": "seed of the first episode"})
    eval_episodes: int = field(default=10, metadata={"help": "episodes of the expert's evaluation (held-out seeds)"})

    def __post_init__(self) -> None:
        self.collect_config()  # task, episodes, image_size, lang, workers: collect's own checks, before any work
        self.eval_config()

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


def run_demo(cfg: DemoConfig) -> dict:
    from genba.datasets.collect import run_collect
    from genba.policies.evaluate import run_eval
    from genba.viz.episode import VizConfig, run_viz

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise GenbaError(f"out={out} is a file, not a folder")
    dataset = out / "dataset"
    rrd = out / "episode_0.rrd"

    print(f"genba demo: 1/3 collecting {cfg.episodes} expert episodes of {cfg.task} into {dataset}", flush=True)
    collected = run_collect(cfg.collect_config())
    print(f"genba demo: 2/3 logging episode 0 to {rrd}", flush=True)
    logged = run_viz(VizConfig(data=str(dataset), episode=0, out=str(rrd)))
    print(f"genba demo: 3/3 evaluating the expert on {cfg.eval_episodes} held-out seeds", flush=True)
    evaluated = run_eval(cfg.eval_config())

    print(f"genba demo: dataset {dataset} ({collected['episodes']} episodes, {collected['frames']} frames)")
    print(f"genba demo: view it with: .venv/bin/rerun {rrd}")
    return {"dataset": str(dataset), "rrd": str(rrd), "collect": collected, "viz": logged, "eval": evaluated}
