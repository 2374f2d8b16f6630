"""The Triton kernel as `torch.ops.genba.st_attention` (forward) and `torch.ops.genba.st_attention_backward`.

Custom ops with fake implementations are opaque to torch.compile: it traces models that call the kernel, with
symbolic shapes, instead of trying (and failing) to trace into Triton's launcher. Autograd is registered on the
forward op and calls the backward op, so compiled backward graphs keep the kernel too. Only torch is imported here;
the kernel module (and triton) is imported when the op first runs on real tensors: triton_tma.py's descriptor
kernels on sm_90 and later, triton_attention.py's pointer kernels elsewhere (the same function, tile for tile).

Both ops carry FLOP formulas for torch's FlopCounterMode (what MFU figures count): the useful FLOPs of the unmasked
(query, key) pairs only, 4 * pairs * D per head forward and 2.5x that backward (reference.attention_flops).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import register_flop_formula

from genba.kernels.reference import attention_flops, useful_pairs

# frame_window travels as an int: 0 = no window (every past frame), as the schema has no Optional[int] sugar here


@torch.library.custom_op("genba::st_attention", mutates_args=())
def st_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tokens_per_frame: int,
    frame_window: int,
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v contiguous (B, H, L, D) -> out (B, H, L, D), lse (B, H, L) fp32 (log2 units; for the backward)."""
    from genba.kernels import triton_attention, triton_tma

    kernels = triton_tma if triton_tma.enabled(q.device) else triton_attention
    return kernels.forward(q, k, v, tokens_per_frame, frame_window or None, causal, scale)


@st_attention_op.register_fake
def _(q, k, v, tokens_per_frame, frame_window, causal, scale):
    batch, heads, length, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((batch, heads, length), dtype=torch.float32)


@torch.library.custom_op("genba::st_attention_backward", mutates_args=())
def st_attention_backward_op(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    tokens_per_frame: int,
    frame_window: int,
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> dq, dk, dv, each (B, H, L, D) like q, k, v."""
    from genba.kernels import triton_attention, triton_tma

    kernels = triton_tma if triton_tma.enabled(q.device) else triton_attention
    return kernels.backward(grad_out, q, k, v, out, lse, tokens_per_frame, frame_window or None, causal, scale)


@st_attention_backward_op.register_fake
def _(grad_out, q, k, v, out, lse, tokens_per_frame, frame_window, causal, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, tokens_per_frame, frame_window, causal, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.params = (tokens_per_frame, frame_window, causal, scale)
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = st_attention_backward_op(grad_out.contiguous(), q, k, v, out, lse, *ctx.params)
    return dq, dk, dv, None, None, None, None


st_attention_op.register_autograd(_backward, setup_context=_setup_context)


def _flops(q_shape: torch.Size, tokens_per_frame: int, frame_window: int, causal: bool) -> tuple[int, int]:
    batch, heads, length, head_dim = q_shape
    pairs = useful_pairs(length // tokens_per_frame, tokens_per_frame, frame_window or None, causal)
    return attention_flops(pairs, batch, heads, head_dim)


@register_flop_formula(torch.ops.genba.st_attention)
def _forward_flops(q_shape, k_shape, v_shape, tokens_per_frame, frame_window, causal, scale, out_shape=None) -> int:
    return _flops(q_shape, tokens_per_frame, frame_window, causal)[0]


@register_flop_formula(torch.ops.genba.st_attention_backward)
def _backward_flops(grad_shape, q_shape, *rest, out_shape=None) -> int:
    _k, _v, _out, _lse, tokens_per_frame, frame_window, causal, _scale = rest
    return _flops(q_shape, tokens_per_frame, frame_window, causal)[1]
