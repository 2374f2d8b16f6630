"""`genba train-worldmodel data=<dir> out=<run> preset=tiny|small|base`: the world model on any LeRobotDataset v3.

    genba train-worldmodel data=outputs/pick_place out=runs/wm preset=tiny
    torchrun --nproc_per_node=2 -m genba train-worldmodel data=... out=... preset=small    # DDP, same command
    genba eval-worldmodel run=runs/wm out=runs/wm/eval.json

The cameras (every video feature, or `cameras=`), the state and action sizes and the fps come from the dataset.
Episodes are split into train and validation once (`<out>/split.json`, seeded; reused on resume); normalization
statistics of the state and action come from the training episodes only. The presets (genba/worldmodel/presets/
<name>.yaml) hold the model's shape and the schedule; steps=, batch_size=, lr=, frame_window=, rollout_steps=,
rollout_context= and motion_weight= override them. The run folder gets
the training loop's metrics.jsonl, last/ and best/ checkpoints (safetensors + JSON) and train_summary.json.

The success head (what the world-model env ends episodes on, genba.worldmodel.env) trains when the data has success
labels with both outcomes among the training frames (`success=null`, the default): a `next.success` column, or
genba's per-episode metadata of a dataset with failures (`genba collect ... noise=0.1 keep_failed=true`). success=true
requires it, success=false leaves it out.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.io import write_json

PRESETS = ("tiny", "small", "base")
PRESET_DIR = Path(__file__).parent / "presets"
SUMMARY = "train_summary.json"
VAL_BATCHES = 8  # validation batches evaluated at each eval_every


@dataclass
class TrainWorldModelConfig:
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 folder"})
    out: str = field(default="", metadata={"help": "run folder (default outputs/worldmodel-<dataset name>)"})
    preset: str = field(default="tiny", metadata={"help": f"model and schedule preset: {', '.join(PRESETS)}"})
    steps: int = field(default=0, metadata={"help": "optimizer steps (0 = the preset's)"})
    batch_size: int = field(default=0, metadata={"help": "clips per step and process (0 = the preset's)"})
    lr: float = field(default=0.0, metadata={"help": "peak learning rate (0 = the preset's)"})
    save_every: int = field(
        default=0, metadata={"help": "checkpoint every N steps (0 = the preset's; always at the end)"}
    )
    cameras: list[str] = field(default_factory=list, metadata={"help": "cameras to use (empty = every camera)"})
    state_key: str = field(default=keys.OBS_STATE, metadata={"help": "proprioceptive state feature"})
    action_key: str = field(default=keys.ACTION, metadata={"help": "action feature"})
    frame_window: int = field(default=-1, metadata={"help": "frames each frame attends to (-1 = preset, 0 = all)"})
    rollout_steps: int = field(
        default=-1, metadata={"help": "frames the rollout loss predicts autoregressively (-1 = preset, 0 = no loss)"}
    )
    rollout_context: int = field(
        default=-1, metadata={"help": "real frames the rollout loss starts from (-1 = preset, 0 = context_frames)"}
    )
    motion_weight: float = field(
        default=-1.0, metadata={"help": "pixel errors weighted by 1 + this x the real frame's change (-1 = preset)"}
    )
    backend: str = field(default="auto", metadata={"help": "attention backend: auto, sdpa, flex, triton, reference"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of episodes held out for validation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/validation split"})
    seed: int = field(default=0, metadata={"help": "training seed (weights, data order)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when there is one), cpu, cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    success: bool | None = field(
        default=None,
        metadata={"help": "train the success head: null = when the data has success labels of both outcomes"},
    )
    success_oversample: int = field(
        default=1, metadata={"help": "draw each training window that holds a success this many times per epoch"}
    )
    resume: bool = field(default=False, metadata={"help": "continue <out>/last"})
    progress: bool = field(default=True, metadata={"help": "progress bar on stderr"})

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise GenbaError(f"preset={self.preset!r} (valid: {', '.join(PRESETS)})")
        if not self.data:
            raise GenbaError("data= is required: a LeRobotDataset v3 folder")
        if not self.out:
            self.out = str(Path("outputs") / f"worldmodel-{Path(self.data).name}")
        if self.success_oversample < 1:
            raise GenbaError(f"success_oversample={self.success_oversample} must be >= 1")
        for name in ("steps", "batch_size", "save_every", "threads"):
            if getattr(self, name) < 0:
                raise GenbaError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr < 0 or self.frame_window < -1:
            raise GenbaError(f"lr={self.lr} must be >= 0 and frame_window={self.frame_window} >= -1")
        for name in ("rollout_steps", "rollout_context"):
            if getattr(self, name) < -1:
                raise GenbaError(f"{name}={getattr(self, name)} must be >= -1 (-1 = the preset's)")
        if self.motion_weight < 0 and self.motion_weight != -1:
            raise GenbaError(f"motion_weight={self.motion_weight} must be >= 0, or -1 (the preset's)")


def load_preset(name: str, folder: Path = PRESET_DIR) -> dict:
    """{"model": {...model config fields}, "train": {...TrainConfig fields}} from <folder>/<name>.yaml (the world
    model's presets by default; the VLA's live in genba/policies/presets)."""
    import yaml

    path = folder / f"{name}.yaml"
    preset = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(preset, dict) or set(preset) != {"model", "train"}:
        raise GenbaError(f"{path} must hold exactly the sections model and train")
    return preset


def build(cfg: TrainWorldModelConfig) -> dict:
    """Everything a run needs, before any training: datasets, split, stats, model, TrainConfig, batches."""
    import torch

    from genba.datasets.split import load_or_make_split
    from genba.datasets.stats import compute_stats
    from genba.train.checkpoint import recover
    from genba.train.loop import LAST, TrainConfig
    from genba.worldmodel.data import ClipBatches, clip_dataset, dataset_tasks, fixed_batches, window_starts
    from genba.worldmodel.model import WorldModel, WorldModelConfig

    last = Path(cfg.out) / LAST
    recover(last)
    if last.exists() and not cfg.resume:  # before the split and stats are touched
        raise GenbaError(f"{last} exists; pass resume=true to continue it, or choose another out")
    preset = load_preset(cfg.preset)
    model_fields, train_fields = dict(preset["model"]), dict(preset["train"])
    image_size = model_fields["backbone"]["image_size"]
    frames = model_fields["clip_frames"]
    kw = dict(image_size=image_size, cameras=cfg.cameras, state_key=cfg.state_key, action_key=cfg.action_key)
    full = clip_dataset(cfg.data, frames, progress=cfg.progress, **kw)
    out = Path(cfg.out)
    split = load_or_make_split(
        out / "split.json",
        dataset=str(full.root),
        num_episodes=full.meta.total_episodes,
        val_fraction=cfg.val_fraction,
        seed=cfg.split_seed,
    )
    if not split["val"]:
        raise GenbaError(f"{full.root} has {full.meta.total_episodes} episode(s): too few to hold one out")
    train_ds = clip_dataset(cfg.data, frames, episodes=split["train"], progress=False, **kw)
    val_ds = clip_dataset(cfg.data, frames, episodes=split["val"], progress=False, **kw)
    stats = compute_stats(train_ds, images=False)
    labels, pos_weight = success_setup(cfg, train_ds, frames)
    feats = full.meta.features
    model_fields.update(
        cameras=list(full.cameras),
        state_key=cfg.state_key,
        action_key=cfg.action_key,
        state_dim=int(feats[cfg.state_key]["shape"][0]),
        action_dim=int(feats[cfg.action_key]["shape"][0]),
        backend=cfg.backend,
        success_head=labels is not None,
        success_pos_weight=pos_weight,
        tasks=dataset_tasks(full),
        fps=round(full.fps),
    )
    if cfg.frame_window >= 0:
        model_fields["frame_window"] = cfg.frame_window or None
    for name in ("rollout_steps", "rollout_context"):
        if getattr(cfg, name) >= 0:
            model_fields[name] = getattr(cfg, name)
    if cfg.motion_weight >= 0:
        model_fields["motion_weight"] = cfg.motion_weight
    model_cfg = WorldModelConfig(**model_fields)
    torch.manual_seed(cfg.seed)  # the initial weights (the loop re-seeds for the data and the rest)
    model = WorldModel(model_cfg)
    model.set_stats(stats)
    batch_size = cfg.batch_size or train_fields.pop("batch_size")
    train_fields.pop("batch_size", None)
    train_fields.update({k: v for k, v in (("steps", cfg.steps), ("lr", cfg.lr), ("save_every", cfg.save_every)) if v})
    if "min_lr" in train_fields and train_fields["min_lr"] > train_fields["lr"]:
        train_fields["min_lr"] = train_fields["lr"]
    train_fields["warmup"] = min(train_fields.get("warmup", 0), train_fields.get("steps", 1))
    # best/ keeps the lowest validation `prediction` (frames and joints): the contrastive and success terms overfit
    # early on small datasets while prediction still improves, and would pick an early checkpoint
    train_fields.setdefault("select", "prediction")
    train_cfg = TrainConfig(
        out=str(out), seed=cfg.seed, device=cfg.device, resume=cfg.resume, progress=cfg.progress, **train_fields
    )
    data = ClipBatches(train_ds, batch_size, seed=cfg.seed, labels=labels, oversample=cfg.success_oversample)
    return {
        "model": model,
        "train": train_cfg,
        "data": data,
        "val": fixed_batches(val_ds, batch_size, VAL_BATCHES, labels=labels),
        "stats": stats,
        "split": split,
        "dataset": str(full.root),
        "batch_size": batch_size,
        "windows": {"train": len(data.starts), "val": len(window_starts(val_ds, frames))},
    }


def success_setup(cfg: TrainWorldModelConfig, train_ds: Any, frames: int) -> tuple[Any, float]:
    """(per-frame next.success labels or None when the head is not trained, the BCE weight of a positive frame =
    negatives / positives over the training windows' frames, as drawn per epoch)."""
    import numpy as np

    from genba.worldmodel.data import success_labels, window_starts

    labels = None if cfg.success is False else success_labels(train_ds)
    if labels is None:
        if cfg.success:
            raise GenbaError(f"success=true but {train_ds.root} has no success labels (no next.success column, no "
                             "genba per-episode metadata)")  # fmt: skip
        return None, 1.0
    window = train_ds.rows[window_starts(train_ds, frames)][:, None] + np.arange(frames)  # (M, T) absolute frames
    positives = int(labels[window].sum())
    repeats = cfg.success_oversample - 1  # each positive window k times: k x its positives, k x its negatives
    total = window.size + repeats * frames * int(labels[window].any(1).sum())
    positives *= 1 + repeats
    if positives == 0 or positives == total:
        if cfg.success:
            what = "no training frame" if not positives else "every training frame"
            raise GenbaError(f"success=true but {what} of {train_ds.root} succeeds: the head needs both outcomes "
                             "(genba collect ... noise=0.1 keep_failed=true keeps failures and successes)")  # fmt: skip
        return None, 1.0
    return labels, (total - positives) / positives


def run_train_worldmodel(cfg: TrainWorldModelConfig) -> dict:
    import torch

    from genba.train import dist
    from genba.train.loop import train
    from genba.worldmodel.model import count_params

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    dist.init_if_needed(dist.device_for(torch.device("cuda" if cuda else "cpu")))  # under torchrun: join the group
    if not dist.is_main():
        dist.barrier()  # rank 0 first builds the frame cache and writes the split; the others then read them
    parts = build(cfg)
    if dist.is_main():
        dist.barrier()
    model = parts["model"]
    summary = train(parts["train"], model, parts["data"], val=parts["val"], stats=parts["stats"], split=parts["split"])
    summary.update(
        train_seconds=round(time.perf_counter() - started, 3),
        params=count_params(model),
        data=parts["dataset"],
        preset=cfg.preset,
        batch_size=parts["batch_size"],
        windows=parts["windows"],
        model=dataclasses.asdict(model.config),
        out=str(cfg.out),
    )
    if dist.is_main():
        write_json(Path(cfg.out) / SUMMARY, summary, indent=2)
    return summary
