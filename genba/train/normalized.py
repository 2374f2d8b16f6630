"""Models that take raw states and actions: their mean/std live in the model's own buffers (saved in its weights).

    class MyModel(Normalized):
        def __init__(self, config):
            super().__init__(config)          # config has state_key, action_key, state_dim, action_dim
    model.set_stats(stats)                    # genba.datasets.stats layout, from the training episodes
    x = model.norm(state, "state"); raw = model.unnorm(y, "action")

The world model and the VLA both derive from it, so a checkpoint carries what it needs to read raw units.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genba.errors import GenbaError

MIN_STD = 1e-4  # a feature that never moved (a locked joint) is not divided by zero


class Normalized(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        for name, _, dim in self.normalized_features():
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def normalized_features(self) -> list[tuple[str, str, int]]:
        """(name, dataset key, size) of every feature the model normalizes; a model that reads more extends it."""
        cfg = self.config
        return [("state", cfg.state_key, cfg.state_dim), ("action", cfg.action_key, cfg.action_dim)]

    def set_stats(self, stats: dict[str, dict]) -> None:
        """Mean/std of the normalized features (genba.datasets.stats layout) into the model's buffers."""
        for name, key, dim in self.normalized_features():
            if key not in stats:
                raise GenbaError(f"no statistics for {key!r} (have: {', '.join(stats)})")
            mean, std = torch.tensor(stats[key]["mean"]), torch.tensor(stats[key]["std"])
            if mean.shape != (dim,):
                raise GenbaError(f"statistics of {key!r} have shape {tuple(mean.shape)}, the model expects ({dim},)")
            getattr(self, f"{name}_mean").copy_(mean)
            getattr(self, f"{name}_std").copy_(std.clamp(min=MIN_STD))

    def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Raw (..., D) -> normalized; `name` is one of `normalized_features` ("state", "action", ...)."""
        return (x.float() - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def unnorm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Normalized (..., D) -> raw units."""
        return x.float() * getattr(self, f"{name}_std") + getattr(self, f"{name}_mean")
