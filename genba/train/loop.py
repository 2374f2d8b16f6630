"""The one training loop, a function: `train(cfg, model, data) -> summary`.

A model supplies only `loss(batch) -> (scalar loss tensor, {name: detached 0-d tensor or float})` and a `config`
dataclass (for its checkpoint; the class is registered with `genba.train.checkpoint.register_model`). The loop owns
everything else: AdamW (weight decay on >= 2-D parameters only), linear warm-up then cosine decay to `min_lr`,
gradient clipping, bf16 autocast on CUDA (off on CPU), an optional EMA of the weights, evaluation every `eval_every`
steps, a tqdm bar on stderr, `<out>/metrics.jsonl`, checkpoints `<out>/last` (every `save_every` and at the end) and
`<out>/best` (lowest validation loss), a stop on a NaN/inf loss or gradient norm (before the update), and exact
resume. The loss, the gradient norm and the metrics reach the host in one copy per step.

`data` is `data(epoch) -> iterable of batches` (deterministic given the epoch and the global RNGs), or a torch
DataLoader; a shuffling DataLoader needs a seeded generator (`generator=torch.Generator().manual_seed(0)`) so that a
resume can replay the epoch's order. Resume (`resume=True`, from `<out>/last`) restores weights, optimizer, EMA,
step, the data position (the epoch's iterator rebuilt and the batches already consumed skipped) and the RNG states:
on CPU the remaining losses and the final weights are bit-identical to an uninterrupted run.

Several processes: `torchrun --nproc_per_node=N <the same command>` (e.g. `torchrun --nproc_per_node=2 -m genba
train-worldmodel ...`) runs the same training with DistributedDataParallel (`genba.train.dist`): each process joins
the process group (gloo on CPU, NCCL on CUDA, one GPU per process by LOCAL_RANK), every rank walks the same global
sequence of batches and rank r takes batches r, r + N, r + 2N, ... of each epoch (a DataLoader or a sequence is split
before loading, so each rank loads only its own), so one optimizer step consumes N batches: the effective batch is
N x the batch size, and the gradient is the mean of the N ranks' (DDP), as one process would get on their
concatenation. A trailing group of fewer than N batches is dropped. `data(epoch)` must give every rank the same
sequence (seed it from the epoch; checked for plain iterators). Rank 0 alone writes metrics.jsonl, TensorBoard and
checkpoints, shows the bar, calls `logger` and evaluates, while the others wait; the logged loss and metrics are the
means over the ranks, and a NaN on any rank stops them all. A checkpoint keeps every rank's RNG states; resume needs
the same N. Every rank returns the summary, so a command writes its own summary on rank 0 only (`dist.is_main()`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from genba.errors import GenbaError
from genba.io import atomic_write, check_writable, dumps
from genba.train import checkpoint as ckpt
from genba.train import dist
from genba.train.state import flatten, rng_state, set_rng_state, unflatten

LAST, BEST, METRICS = "last", "best", "metrics.jsonl"
Data = Callable[[int], Iterable[Any]] | torch.utils.data.DataLoader


@dataclass
class TrainConfig:
    out: str  # run folder: metrics.jsonl, last/, best/
    steps: int = 1000  # optimizer steps in the whole run (the schedule's length)
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    min_lr: float = 3e-5  # where the cosine decay ends, at `steps`
    warmup: int = 100  # linear warm-up steps (lr * (i + 1) / warmup for step i)
    weight_decay: float = 0.1  # AdamW, on >= 2-D parameters (matrices, embeddings) only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    ema: float = 0.0  # EMA decay of the weights (e.g. 0.999); 0 = off
    seed: int = 0
    log_every: int = 1  # metrics.jsonl / progress cadence, in steps
    eval_every: int = 0  # 0 = no evaluation
    select: str = "loss"  # the validation metric (lower is better) whose lowest value best/ keeps
    save_every: int = 0  # checkpoint cadence; 0 = only at the end (always at the end)
    stop_at: int = 0  # stop (with a checkpoint) after this step, schedule unchanged; 0 = run to `steps`
    resume: bool = False  # continue from <out>/last (start fresh when there is none)
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True  # tqdm bar on stderr

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.steps < 1:
            raise GenbaError(f"steps={self.steps}: must be at least 1")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise GenbaError(f"lr={self.lr}, min_lr={self.min_lr}: need lr > 0 and 0 <= min_lr <= lr")
        for name in ("warmup", "log_every", "eval_every", "save_every", "stop_at"):
            if getattr(self, name) < 0:
                raise GenbaError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.log_every < 1:
            raise GenbaError(f"log_every={self.log_every}: must be at least 1")
        if self.warmup > self.steps:
            raise GenbaError(f"warmup={self.warmup} is longer than steps={self.steps}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise GenbaError(f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}: must be >= 0")
        if not 0 <= self.ema < 1:
            raise GenbaError(f"ema={self.ema}: a decay in [0, 1) (0 = off)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise GenbaError(f"betas={self.betas}: two values in [0, 1)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise GenbaError(f"device={self.device!r}: one of auto, cpu, cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise GenbaError("device=cuda but no CUDA device is available")
        check_writable(self.out, "out", folder=True)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of update `step` (0-based): linear warm-up to lr, then cosine down to min_lr at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = cfg.steps - cfg.warmup
    t = min(1.0, (step - cfg.warmup) / span) if span > 0 else 1.0
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * t)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on >= 2-D parameters only: biases and norm gains are not pulled to zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train(
    cfg: TrainConfig,
    model: nn.Module,
    data: Data,
    logger: Callable[[dict], None] | None = None,
    *,
    val: Iterable[Any] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    stats: dict | None = None,
    split: dict | None = None,
) -> dict:
    """Train `model` on `data` for cfg.steps (or up to cfg.stop_at); returns a summary dict (on every rank).

    val: re-iterable validation batches (mean of `model.loss` under no_grad), or evaluate(model) -> metrics.
    logger: called with every record written to metrics.jsonl (on rank 0). stats / split go into every checkpoint.
    """
    device = torch.device(
        "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device.replace("auto", "cpu")
    )
    device = dist.device_for(device)  # cuda:LOCAL_RANK under torchrun
    dist.init_if_needed(device)  # joins torchrun's process group once per process; a no-op in a single process
    rank, world = dist.world()
    main = rank == 0
    out = Path(cfg.out)
    last = out / LAST
    if main:
        ckpt.recover(last)
    dist.barrier()
    if last.exists() and not cfg.resume:
        raise GenbaError(f"{last} exists; pass resume=True to continue it, or choose another out")
    kind = ckpt.kind_of(model)  # fail before any work when the model cannot be checkpointed
    _seed(cfg.seed)  # the same on every rank: a data(epoch) drawing from the global RNGs gives every rank one stream
    model.to(device)
    opt = make_optimizer(model, cfg)
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()} if cfg.ema else None
    gens = _generators(data)
    # `consumed` counts this epoch's optimizer steps; each takes `world` batches of the epoch's global sequence
    step, epoch, consumed, best, resumed = 0, 0, 0, math.inf, None
    epoch_gen_state: list[torch.Tensor] = [g.get_state() for g in gens]
    saved_rng = None
    if cfg.resume and last.is_dir():
        tensors, meta = ckpt.load_trainer(last)
        if meta.get("world_size", 1) != world:
            raise GenbaError(
                f"{last} was trained by {meta.get('world_size', 1)} processes, this run has {world}: resume it with "
                "as many (the batch of a step and the position in the data depend on it)"
            )
        trained, _ = ckpt.load_model(last, kind=kind, device=device)
        if getattr(model, "config", None) != trained.config:
            raise GenbaError(f"{last} was trained with another config ({trained.config}); build the model from it")
        model.load_state_dict(trained.state_dict())
        opt.load_state_dict(unflatten(meta["optimizer"], tensors))
        if ema is not None:
            ema = {k: tensors[f"ema.{k}"].to(device) if f"ema.{k}" in tensors else v for k, v in ema.items()}
        step, epoch, best = meta["step"], meta["epoch"], meta.get("best", math.inf)
        consumed = meta["batch_in_epoch"] // world
        epoch_gen_state = [tensors[f"data.generator.{i}"] for i in range(len(gens))]
        own = {k.removeprefix(f"rank{rank}."): v for k, v in tensors.items() if k.startswith(f"rank{rank}.rng.")}
        saved_rng, resumed = own or tensors, str(last)
    if main:
        _trim_metrics(out / METRICS, step)
    end = min(cfg.steps, cfg.stop_at or cfg.steps)
    loss_of = model.loss if world == 1 else dist.wrap(model, device)  # DDP averages the gradients over the ranks

    # The epoch's iterator is rebuilt from the generator state at its start and the consumed batches skipped; the
    # global RNGs are restored only after that, since building or skipping may draw from them.
    for g, s in zip(gens, epoch_gen_state, strict=True):
        g.set_state(s)
    batches = _skip(iter(dist.shard(_epoch(data, epoch), rank, world)), consumed)
    if saved_rng is not None:
        set_rng_state(saved_rng)

    def save(path: Path, trainer: bool) -> None:
        """Rank 0 writes; every rank hands over its RNG states and waits until the folder is in place."""
        ranks = dist.all_gather(rng_state()) if trainer and world > 1 else []
        if main:
            tensors: dict[str, torch.Tensor] = {}
            meta = None
            if trainer:
                meta = {
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": consumed * world,  # global batches of the epoch consumed
                    "best": best,
                    "metrics": record,
                    "config": dataclasses.asdict(cfg),
                    "optimizer": flatten(opt.state_dict(), "optim", tensors),
                }
                if world > 1:
                    meta["world_size"] = world
                tensors |= rng_state()
                tensors |= {f"rank{r}.{k}": v for r, states in enumerate(ranks) if r for k, v in states.items()}
                tensors |= {f"data.generator.{i}": s for i, s in enumerate(epoch_gen_state)}
                tensors |= {f"ema.{k}": v.detach().cpu().clone() for k, v in (ema or {}).items()}
            ckpt.save_checkpoint(
                path, model, stats=stats, split=split, trainer_tensors=tensors if trainer else None, trainer_meta=meta
            )
        dist.barrier()

    tb = _tensorboard(out) if main else None
    record: dict = {}
    start, last_loss = time.perf_counter(), math.nan
    bar = tqdm(
        total=end, initial=step, file=sys.stderr, disable=not (cfg.progress and main), dynamic_ncols=True, desc="train"
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    try:
        while step < end:
            try:
                batch = next(batches)
            except StopIteration:
                epoch, consumed = epoch + 1, 0
                epoch_gen_state = [g.get_state() for g in gens]
                batches = iter(dist.shard(_epoch(data, epoch), rank, world))
                batch = next(batches, None)
                if batch is None:
                    need = f" (at least {world}: one per process)" if world > 1 else ""
                    raise GenbaError(f"data gave no batches for epoch {epoch}{need}") from None
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            with autocast:
                loss, metrics = loss_of(_to(batch, device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            norm_t = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else math.inf)
            # one device-to-host copy per step: the loss, the norm and every metric together
            value, norm, *values = _host([loss, norm_t, *metrics.values()])
            metrics = dict(zip(metrics, values, strict=True))
            if world > 1:  # the mean over ranks, so that a NaN on any rank stops them all at the same step
                value, *means = dist.all_reduce_mean([value, *metrics.values()])
                metrics = dict(zip(metrics, means, strict=True))
            if not math.isfinite(value):
                raise GenbaError(f"loss is {value} at step {step + 1}; the last good checkpoint is {last}")
            if not math.isfinite(norm):
                raise GenbaError(f"gradient norm is {norm} at step {step + 1}; the last good checkpoint is {last}")
            opt.step()
            step, consumed, last_loss = step + 1, consumed + 1, value
            if ema is not None:
                _ema_update(ema, model, cfg.ema)
            if step % cfg.log_every == 0 or step == end:
                record = {
                    "step": step,
                    "lr": lr,
                    "loss": value,
                    "grad_norm": norm,
                    "metrics": metrics,
                    "seconds": round(time.perf_counter() - start, 4),
                }
                if main:
                    _log(out, record, logger, tb)
                bar.set_postfix(loss=f"{value:.4g}", lr=f"{lr:.3g}", refresh=False)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == end) and (val is not None or evaluate):
                # rank 0 evaluates (an evaluate() with side effects runs once); the others wait for its loss
                result = _evaluate(model, val, evaluate, device, autocast) if main else {}
                if main:
                    _log(out, {"step": step, "val": result}, logger, tb)
                # a metric the evaluation does not report stops every rank (-inf says it to them all); an
                # evaluation of no batches reports nothing and keeps no best/, as before
                missing = main and bool(result) and cfg.select not in result
                loss_val = dist.broadcast(-math.inf if missing else result.get(cfg.select, math.inf))
                if loss_val == -math.inf:
                    raise GenbaError(f"select={cfg.select!r} is not one of the validation metrics")
                if loss_val < best:
                    best = loss_val
                    save(out / BEST, trainer=False)
            if step == end or (cfg.save_every and step % cfg.save_every == 0):
                save(last, trainer=True)
            bar.update(1)
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    return {
        "steps": step,
        "final_loss": last_loss,
        "best_val_loss": None if best == math.inf else best,
        "checkpoint": str(last),
        "resumed_from": resumed,
        "seconds": round(time.perf_counter() - start, 3),
        "device": str(device),
        "kind": kind,
        "world_size": world,
    }


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _generators(data: Data) -> list[torch.Generator]:
    """The seeded generators a DataLoader draws its order (and worker seeds) from; [] for a callable."""
    if not isinstance(data, torch.utils.data.DataLoader):
        if not callable(data):
            raise GenbaError(f"data must be data(epoch) -> batches or a DataLoader, not {type(data).__name__}")
        return []
    gens = [g for g in (data.generator, getattr(data.sampler, "generator", None)) if g is not None]
    gens = list({id(g): g for g in gens}.values())
    if not gens and isinstance(data.sampler, torch.utils.data.RandomSampler | torch.utils.data.SubsetRandomSampler):
        raise GenbaError("a shuffling DataLoader needs generator=torch.Generator().manual_seed(...) for exact resume")
    return gens


def _epoch(data: Data, epoch: int) -> Iterable[Any]:
    return data if isinstance(data, torch.utils.data.DataLoader) else data(epoch)


def _skip(batches: Iterator[Any], n: int) -> Iterator[Any]:
    for _ in range(n):  # loads the skipped batches: exact, and cheap next to the training it replaces
        next(batches, None)
    return batches


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to(v, device) for v in batch)
    return batch


@torch.no_grad()
def _ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * w for floating tensors; integer buffers (counters) copied."""
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            ema[k].mul_(decay).add_(v.detach().float(), alpha=1.0 - decay)
        else:
            ema[k].copy_(v)


@torch.no_grad()
def _evaluate(model: nn.Module, val: Iterable[Any] | None, evaluate: Any, device: torch.device, autocast: Any) -> dict:
    model.eval()
    if evaluate is not None:
        return {k: float(v) for k, v in evaluate(model).items()}
    sums: dict[str, Any] = {}
    n = 0
    for batch in val or ():
        with autocast:
            loss, metrics = model.loss(_to(batch, device))
        for k, v in {"loss": loss, **metrics}.items():  # summed where they are: no host copy per batch
            sums[k] = sums.get(k, 0.0) + (v.detach().float() if isinstance(v, torch.Tensor) else v)
        n += 1
    return dict(zip(sums, (v / max(n, 1) for v in _host(list(sums.values()))), strict=True))


def _host(values: list[torch.Tensor | float]) -> list[float]:
    """Python floats of scalar tensors and numbers, with the tensors copied to the host in one transfer per device.

    A `float()` per tensor would wait for the device once per value (a dozen times per step for the world model)."""
    out: list[float] = [v if not isinstance(v, torch.Tensor) else math.nan for v in values]
    at = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    for dev in {values[i].device for i in at}:
        idx = [i for i in at if values[i].device == dev]
        stacked = torch.stack([values[i].detach().float().reshape(()) for i in idx]).tolist()
        for i, v in zip(idx, stacked, strict=True):
            out[i] = v
    return [float(v) for v in out]


def _log(out: Path, record: dict, logger: Callable[[dict], None] | None, tb: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS, "a", encoding="utf-8") as f:
        f.write(dumps(record, indent=None))
    if logger is not None:
        logger(record)
    if tb is not None:
        flat = {k: record[k] for k in ("lr", "loss", "grad_norm") if k in record}
        flat |= {f"train/{k}": v for k, v in record.get("metrics", {}).items()}
        flat |= {f"val/{k}": v for k, v in record.get("val", {}).items()}
        for k, v in flat.items():
            tb.add_scalar(k, v, record["step"])


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records after the resumed step (logged after the last checkpoint by a run that was then killed)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line)["step"] <= step:
                keep.append(line + "\n")
    atomic_write(path, "".join(keep))


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package: optional
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))
