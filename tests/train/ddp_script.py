"""Trainings for tests/train/test_ddp.py, run by `torchrun --standalone --nproc_per_node=2 ddp_script.py ROOT MODE`.

MODE "first" trains several runs in ROOT (each train() call joins and leaves the process group itself); "resume"
continues the run stopped early by "first". Each rank writes <run>.rank<r>.json (summary or error, the checkpoint
paths it wrote, how often the logger was called) and <run>.rank<r>.safetensors (its final weights).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import safetensors.torch
import tiny_mlp
import torch

from genba.errors import GenbaError
from genba.train import checkpoint as ckpt
from genba.train.loop import TrainConfig, train

STEPS, STOP, EVAL_EVERY = 10, 6, 5  # 8 batches per epoch = 4 steps of two processes: 10 steps span three epochs


def config(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), steps=STEPS, lr=1e-2, min_lr=1e-3, warmup=2, save_every=4, ema=0.9, progress=False)
    return TrainConfig(**(base | kw))


def val() -> list[dict[str, torch.Tensor]]:
    x, y = tiny_mlp.dataset()
    return [{"x": x[:16], "y": y[:16]}, {"x": x[16:32], "y": y[16:32]}]


def run(root: Path, name: str, data, *, seed: int = 0, dropout: float = 0.0, **kw) -> None:
    rank = int(os.environ["RANK"])
    saves, logs = [], []
    real = ckpt.save_checkpoint

    def spy(path, *a, **k):
        saves.append(Path(path).name)
        return real(path, *a, **k)

    ckpt.save_checkpoint = spy  # the loop calls it through the module
    model = tiny_mlp.model(seed, dropout=dropout)
    try:
        summary, error = train(config(root / name, **kw), model, data, logger=logs.append, val=val()), None
    except GenbaError as e:
        summary, error = None, str(e)
    finally:
        ckpt.save_checkpoint = real
    safetensors.torch.save_file(model.state_dict(), str(root / f"{name}.rank{rank}.safetensors"))
    result = {"summary": summary, "error": error, "saves": saves, "logs": len(logs)}
    (root / f"{name}.rank{rank}.json").write_text(json.dumps(result))


def main(root: Path, mode: str) -> None:
    rank = int(os.environ["RANK"])
    epochs = tiny_mlp.epochs()
    if mode == "first":
        run(root, "whole", epochs, eval_every=EVAL_EVERY)  # a list per epoch: each rank indexes its own batches
        run(root, "stream", lambda e: iter(epochs(e)), eval_every=EVAL_EVERY)  # an iterator: strided on every rank
        run(root, "drop", epochs, dropout=0.1)
        run(root, "part", epochs, dropout=0.1, stop_at=STOP)
        run(root, "loader", tiny_mlp.loader(), steps=6)  # split at the batch sampler
        run(root, "nan", tiny_mlp.epochs(nan_batch=3), save_every=1)  # global batch 3: rank 1's at step 2
        run(root, "mismatch", lambda e: iter(epochs(e + rank)))  # another order on each rank
    elif mode == "resume":
        run(root, "part", epochs, seed=99, dropout=0.1, resume=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
