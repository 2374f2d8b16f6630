"""`st_attention`: spatiotemporal (frame-block) attention with one signature over several backends.

    reference  the specification (reference.py): dense masked softmax in fp32
    sdpa       torch's scaled_dot_product_attention with the boolean (L, L) mask
    flex       FlexAttention with the matching block mask (compiled on CUDA; eager, unfused, on CPU)
    triton     our kernel (triton_attention.py) through the custom op in op.py; CUDA, or CPU under TRITON_INTERPRET=1
    auto       triton on CUDA; on CPU the fastest correct path (sdpa: measured, see AUTO_CPU)

Nothing falls back silently: a backend that cannot run the request raises GenbaError with one line.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch

from genba.errors import GenbaError
from genba.kernels.op import st_attention_op
from genba.kernels.reference import frame_allowed, frame_mask, reference_attention

BACKENDS = ("auto", "reference", "sdpa", "flex", "triton")
HEAD_DIMS = (32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Measured on a 2-core x86 CPU (torch 2.11, fp32, B x H = 4-32, L = 128-1024, D = 32-64, window None or 4): sdpa
# with the boolean mask was the fastest or tied everywhere, forward 1-5x and forward+backward 1.1-3x faster than
# the fp32 reference; eager (unfused) flex was 5-20x slower and has no CPU backward. Re-measure with
# `genba bench attention device=cpu`.
AUTO_CPU = "sdpa"


def st_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    tokens_per_frame: int,
    frame_window: int | None = None,
    causal: bool = True,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """q, k, v (B, H, L, D), L = F * tokens_per_frame, D in {32, 64, 128} -> (B, H, L, D). Differentiable.

    A query of frame i sees the keys of frames j with i - frame_window < j <= i (causal; None = all past frames),
    or |i - j| < frame_window (causal=False; None = full attention). scale defaults to 1 / sqrt(D).
    """
    _validate(q, k, v, tokens_per_frame, frame_window, backend)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    kwargs = dict(tokens_per_frame=tokens_per_frame, frame_window=frame_window, causal=causal, scale=scale)
    return _BACKEND_FNS[resolve_backend(backend, q.device)](q, k, v, **kwargs)


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """What `backend` means on `device` ("auto" -> "triton" on CUDA, AUTO_CPU elsewhere)."""
    device = torch.device(device)
    if backend == "auto":
        if device.type == "cuda":
            if not _has_triton():
                raise GenbaError(
                    "backend='auto' on CUDA means triton, which is not installed; install triton or pass "
                    "backend='flex' or 'sdpa' explicitly"
                )
            return "triton"
        return AUTO_CPU
    return backend


def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _validate(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens_per_frame: int, frame_window: int | None, backend: str
) -> None:
    if backend not in BACKENDS:
        raise GenbaError(f"unknown attention backend {backend!r} (valid: {', '.join(BACKENDS)})")
    if q.dim() != 4:
        raise GenbaError(f"q must be (B, H, L, D), got shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise GenbaError(f"q, k, v must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise GenbaError(
            f"q, k, v must share one dtype of float32, float16, bfloat16; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if k.device != q.device or v.device != q.device:
        raise GenbaError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] not in HEAD_DIMS:
        raise GenbaError(f"head dim D={q.shape[-1]} is not supported (valid: {', '.join(map(str, HEAD_DIMS))})")
    if not isinstance(tokens_per_frame, int) or tokens_per_frame < 1:
        raise GenbaError(f"tokens_per_frame must be a positive int, got {tokens_per_frame!r}")
    if q.shape[2] == 0 or q.shape[2] % tokens_per_frame:
        raise GenbaError(
            f"sequence length L={q.shape[2]} is not a positive multiple of tokens_per_frame={tokens_per_frame}"
        )
    if frame_window is not None and (not isinstance(frame_window, int) or frame_window < 1):
        raise GenbaError(f"frame_window must be None or an int >= 1, got {frame_window!r}")


def _sdpa(q, k, v, *, tokens_per_frame, frame_window, causal, scale):
    length = q.shape[2]
    if not causal and frame_window is None:
        mask = None  # full attention: let sdpa pick its fastest (flash) kernel
    else:
        mask = frame_mask(length, tokens_per_frame, frame_window, causal, q.device)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@functools.lru_cache(maxsize=64)
def block_mask(length: int, tokens_per_frame: int, frame_window: int | None, causal: bool, device: str):
    """FlexAttention's BlockMask for this frame structure; cached, building one costs a pass over the mask."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return frame_allowed(q_idx // tokens_per_frame, kv_idx // tokens_per_frame, frame_window, causal)

    return create_block_mask(mask_mod, None, None, length, length, device=device)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q, k, v, *, tokens_per_frame, frame_window, causal, scale):
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise GenbaError("backend='flex' has no backward on CPU in torch 2.11; use backend='sdpa' or 'reference'")
    mask = block_mask(q.shape[2], tokens_per_frame, frame_window, causal, str(q.device))
    # On CUDA only the compiled kernel is FlexAttention proper; CPU runs the eager (unfused) path, which needs no
    # C++ toolchain and is the same math.
    if q.device.type == "cuda":
        return _compiled_flex()(q, k, v, block_mask=mask, scale=scale)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(q, k, v, block_mask=mask, scale=scale)


def _triton(q, k, v, *, tokens_per_frame, frame_window, causal, scale):
    if not _has_triton():
        raise GenbaError("backend='triton' needs the triton package, which is not installed; use 'sdpa' or 'flex'")
    if q.device.type != "cuda":
        from genba.kernels import triton_attention  # raises the interpreter/CPU error with one line

        triton_attention.check_runnable(q.device)
    out, _ = st_attention_op(
        q.contiguous(), k.contiguous(), v.contiguous(), tokens_per_frame, frame_window or 0, causal, scale
    )
    return out


_BACKEND_FNS = {"reference": reference_attention, "sdpa": _sdpa, "flex": _flex, "triton": _triton}
