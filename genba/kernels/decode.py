"""Rollout decoding: the queries of one new frame against cached keys/values of the past frames.

With frame-block causal attention, the N queries of the newest frame see exactly the keys of the last W frames,
their own included, with no mask inside that range: decoding is plain attention over a window of the cache, which
sdpa runs with its fastest (flash / memory-efficient) kernel on any device. `FrameKVCache` keeps only those W frames,
so a rollout of any length has constant memory and constant cost per frame.
"""

from __future__ import annotations

import math

import torch

from genba.errors import GenbaError


def st_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    *,
    tokens_per_frame: int,
    frame_window: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """q (B, H, N, D): the newest frame's queries; k_cache, v_cache (B, H, Lc, D) with Lc = Fc * N, the newest frame
    last -> (B, H, N, D), equal to the newest frame's rows of causal `st_attention` over the cached frames."""
    n = tokens_per_frame
    if q.dim() != 4 or q.shape[2] != n:
        raise GenbaError(f"decode queries must be one frame (B, H, N={n}, D), got shape {tuple(q.shape)}")
    if k_cache.shape != v_cache.shape or k_cache.shape[:2] != q.shape[:2] or k_cache.shape[3] != q.shape[3]:
        raise GenbaError(
            f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} must be (B, H, Lc, D) "
            f"matching q {tuple(q.shape)}"
        )
    if k_cache.shape[2] < n or k_cache.shape[2] % n:
        raise GenbaError(
            f"cache length {k_cache.shape[2]} is not a positive multiple of tokens_per_frame={n} "
            "(it must hold the newest frame)"
        )
    if frame_window is not None and frame_window < 1:
        raise GenbaError(f"frame_window must be None or an int >= 1, got {frame_window!r}")
    if frame_window is not None:
        k_cache, v_cache = k_cache[:, :, -frame_window * n :], v_cache[:, :, -frame_window * n :]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.nn.functional.scaled_dot_product_attention(q, k_cache, v_cache, scale=scale)


class FrameKVCache:
    """Keys/values of the last `frame_window` frames (all frames when None), appended one frame at a time."""

    def __init__(self, tokens_per_frame: int, frame_window: int | None = None) -> None:
        if tokens_per_frame < 1 or (frame_window is not None and frame_window < 1):
            raise GenbaError(
                f"need tokens_per_frame >= 1 and frame_window None or >= 1, got {tokens_per_frame}, {frame_window}"
            )
        self.tokens_per_frame = tokens_per_frame
        self.frame_window = frame_window
        self.k: torch.Tensor | None = None  # (B, H, Fc * N, D)
        self.v: torch.Tensor | None = None
        self.frames_seen = 0

    @property
    def frames(self) -> int:
        """Frames held now (<= frame_window)."""
        return 0 if self.k is None else self.k.shape[2] // self.tokens_per_frame

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (B, H, N, D) of the newest frame; frames that fell out of the window are dropped."""
        if k.dim() != 4 or k.shape[2] != self.tokens_per_frame or v.shape != k.shape:
            raise GenbaError(
                f"append takes one frame, k and v (B, H, N={self.tokens_per_frame}, D); "
                f"got {tuple(k.shape)}, {tuple(v.shape)}"
            )
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        if self.frame_window is not None:
            keep = self.frame_window * self.tokens_per_frame
            self.k, self.v = self.k[:, :, -keep:], self.v[:, :, -keep:]
        self.frames_seen += 1

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """Append the newest frame's k, v and attend its queries q: all (B, H, N, D) -> (B, H, N, D)."""
        self.append(k, v)
        return st_attention_decode(
            q, self.k, self.v, tokens_per_frame=self.tokens_per_frame, frame_window=self.frame_window, scale=scale
        )

    def reset(self) -> None:
        self.k = self.v = None
        self.frames_seen = 0
