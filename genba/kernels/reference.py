"""The specification of spatiotemporal (frame-block) attention, in plain PyTorch.

Tokens are laid out frame by frame: L = F frames x N tokens per frame. A query of frame i sees the keys of frame j when
    causal:      i - W < j <= i      (W = frame_window; None = every past frame; W = 1 = within the frame)
    not causal:  |i - j| < W         (None = every frame: full attention)
Every query sees at least its own frame, so no softmax row is ever empty. Every other backend is tested against
`reference_attention`, which does the masked softmax in fp32 whatever the input dtype.
"""

from __future__ import annotations

import math

import torch


def frame_allowed(frame_q: torch.Tensor, frame_k: torch.Tensor, frame_window: int | None, causal: bool) -> torch.Tensor:
    """Which (query frame, key frame) pairs attend; broadcasts like `frame_q - frame_k`. The one mask rule."""
    d = frame_q - frame_k
    if causal:
        ok = d >= 0
        return ok & (d < frame_window) if frame_window is not None else ok
    if frame_window is None:
        return torch.ones_like(d, dtype=torch.bool)
    return d.abs() < frame_window


def frame_mask(
    length: int, tokens_per_frame: int, frame_window: int | None, causal: bool, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(L, L) bool, True where query row i may attend key column j."""
    frame = torch.arange(length, device=device) // tokens_per_frame
    return frame_allowed(frame[:, None], frame[None, :], frame_window, causal)


def useful_pairs(frames: int, tokens_per_frame: int, frame_window: int | None, causal: bool) -> int:
    """Number of unmasked (query, key) pairs per head: what useful FLOP counts are based on."""
    f = torch.arange(frames)
    allowed = frame_allowed(f[:, None], f[None, :], frame_window, causal)
    return int(allowed.sum()) * tokens_per_frame * tokens_per_frame


def attention_flops(pairs: int, batch: int, heads: int, head_dim: int) -> tuple[int, int]:
    """(forward, backward) FLOPs over the unmasked pairs: 2 matmuls forward, 5 backward (FlashAttention's count)."""
    fwd = 4 * pairs * batch * heads * head_dim
    return fwd, fwd * 5 // 2


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    tokens_per_frame: int,
    frame_window: int | None = None,
    causal: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """q, k, v (B, H, L, D) -> (B, H, L, D) in q's dtype; the masked softmax computed in fp32. Differentiable."""
    length, head_dim = q.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale  # (B, H, L, L)
    mask = frame_mask(length, tokens_per_frame, frame_window, causal, q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v.float()).to(q.dtype)
