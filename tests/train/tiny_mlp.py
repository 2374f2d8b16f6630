"""A tiny real model and synthetic data for the training tests. Imported by the tests as a plain module (pytest puts
this folder on sys.path); run as a script it trains into argv[1] and SIGKILLs itself after step argv[2]."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genba.train.checkpoint import register_model

N, DIM_IN, DIM_OUT, BATCH = 64, 4, 2, 8  # 8 batches per epoch


@dataclass
class MLPConfig:
    dim_in: int = DIM_IN
    dim_out: int = DIM_OUT
    widths: tuple[int, ...] = (16,)
    dropout: float = 0.1  # draws from the global RNG, so an exact resume must restore it


class MLP(nn.Module):
    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.dim_in
        for w in config.widths:
            layers += [nn.Linear(width, w), nn.ReLU(), nn.Dropout(config.dropout)]
            width = w
        self.net = nn.Sequential(*layers, nn.Linear(width, config.dim_out))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = self.net(batch["x"])  # (B, dim_in) -> (B, dim_out)
        return F.mse_loss(pred, batch["y"]), {"mae": (pred.detach() - batch["y"]).abs().mean()}  # 0-d, as models do


class Other(MLP):
    pass


register_model("test-mlp", MLP, MLPConfig)
register_model("test-other", Other, MLPConfig)


def dataset(scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, DIM_IN), y (N, DIM_OUT) = a fixed linear map of x, times `scale`."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, DIM_IN, generator=g)
    w = torch.randn(DIM_IN, DIM_OUT, generator=g)
    return x, (x @ w) * scale


def epochs(scale: float = 1.0, nan_batch: int | None = None):
    """data(epoch) -> list of {"x", "y"} batches in an order fixed by the epoch; batch `nan_batch` of epoch 0 is NaN."""
    x, y = dataset(scale)

    def data(epoch: int) -> list[dict[str, torch.Tensor]]:
        order = torch.randperm(N, generator=torch.Generator().manual_seed(epoch))
        out = [{"x": x[i], "y": y[i]} for i in order.split(BATCH)]
        if epoch == 0 and nan_batch is not None:
            out[nan_batch] = {"x": out[nan_batch]["x"] * float("nan"), "y": out[nan_batch]["y"]}
        return out

    return data


def loader(seed: int = 7) -> torch.utils.data.DataLoader:
    x, y = dataset()
    ds = torch.utils.data.TensorDataset(x, y)
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, generator=g, collate_fn=_collate)


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([a for a, _ in items]), "y": torch.stack([b for _, b in items])}


def model(seed: int = 0, **kw) -> MLP:
    torch.manual_seed(seed)
    return MLP(MLPConfig(**kw))


if __name__ == "__main__":
    from genba.train.loop import TrainConfig, train

    out, kill_after = sys.argv[1], int(sys.argv[2])

    def die(record: dict) -> None:
        if record.get("step") == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = TrainConfig(out=out, steps=12, lr=1e-2, min_lr=1e-3, warmup=2, save_every=4, ema=0.9, progress=False)
    train(cfg, model(), epochs(), logger=die)
