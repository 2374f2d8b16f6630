"""The world model's dynamics block: pre-norm attention over frame blocks (`genba.kernels.st_attention`, frame t
sees frames t - frame_window < j <= t) with a rotary embedding over the frame index, and optionally adaLN-Zero
conditioning of every token on its frame's action (DiT, Peebles and Xie 2023)."""

from __future__ import annotations

import torch
from torch import nn

from genba.kernels import FrameKVCache, st_attention


class Block(nn.Module):
    """Pre-norm transformer block with frame-block causal attention and temporal rotary embeddings; with `adaln`,
    each norm's output is scaled and shifted by a per-frame condition (DiT's adaLN-Zero: zero-initialized, so the
    block starts as the plain one)."""

    def __init__(self, width: int, heads: int, adaln: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        if adaln:  # only then: runs without it keep their weights' keys
            self.ada = nn.Linear(width, 4 * width)
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        *,
        n: int,
        window: int | None,
        backend: str,
        cache: FrameKVCache | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, L, W) with L = F * n, cond (B, F, W) or None -> (B, L, W). With a cache: F frames are appended to
        it and attend to it."""
        b, length, width = x.shape
        h1 = self.norm1(x)
        if cond is not None:  # (B, F, 4W) -> four (B, L, W): every token of a frame takes its frame's modulation
            mod = self.ada(cond).repeat_interleave(n, 1).chunk(4, -1)
            h1 = h1 * (1 + mod[0]) + mod[1]
        q, k, v = self.qkv(h1).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, L, D)
        q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is None:
            a = st_attention(q, k, v, tokens_per_frame=n, frame_window=window, backend=backend)
        else:  # one frame at a time against the cache (prefill appends each context frame in turn)
            a = torch.cat([cache.step(*(t[:, :, i : i + n] for t in (q, k, v))) for i in range(0, length, n)], 2)
        x = x + self.proj(a.transpose(1, 2).reshape(b, length, width))
        h2 = self.norm2(x) if cond is None else self.norm2(x) * (1 + mod[2]) + mod[3]
        return x + self.mlp(h2)


def rope_tables(frames: torch.Tensor, n: int, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame indices (F,) -> cos, sin (F * n, head_dim / 2): every token of a frame shares its frame's angle."""
    inv = 1.0 / (100.0 ** (torch.arange(0, head_dim, 2, device=frames.device, dtype=torch.float32) / head_dim))
    angle = frames.float()[:, None] * inv[None]  # (F, D/2)
    angle = angle.repeat_interleave(n, 0)  # (F * n, D/2)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: x (B, H, L, D), cos/sin (L, D/2) fp32 -> (B, H, L, D) in x's dtype (bf16 under autocast:
    q and k must keep v's dtype for the attention kernels)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)
