"""Spatiotemporal (frame-block) attention: a PyTorch reference, a Triton kernel, dispatch and a decode helper.

`genba.kernels.st_attention(q, k, v, *, tokens_per_frame, frame_window=None, causal=True, scale=None,
backend="auto")`. The names below are loaded on first use (PEP 562), so that `genba bench attention --help` imports
the stdlib-only genba.kernels.bench without torch; the package then needs only torch, and the Triton kernel module
(and triton) is imported the first time backend="triton" runs, so it works where triton is absent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers and editors
    from genba.kernels.attention import BACKENDS, resolve_backend, st_attention
    from genba.kernels.decode import FrameKVCache, st_attention_decode
    from genba.kernels.reference import frame_mask, reference_attention, useful_pairs

_EXPORTS = {
    "BACKENDS": "attention",
    "resolve_backend": "attention",
    "st_attention": "attention",
    "FrameKVCache": "decode",
    "st_attention_decode": "decode",
    "frame_mask": "reference",
    "reference_attention": "reference",
    "useful_pairs": "reference",
}
__all__ = [
    "BACKENDS",
    "FrameKVCache",
    "frame_mask",
    "reference_attention",
    "resolve_backend",
    "st_attention",
    "st_attention_decode",
    "useful_pairs",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genba.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"genba.kernels.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
