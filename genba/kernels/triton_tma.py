"""Frame-block attention with Hopper's tensor memory accelerator (TMA): the tiles move by descriptor, not pointers.

The same three kernels as `triton_attention.py` (forward, dQ, dK/dV; same mask, same visiting rule, same
log-sum-exp, same results tile for tile), but every tile of Q, K, V, dO and of the outputs moves through a
host-built tensor descriptor over the (B*H, L, D) view: the copy engine computes the addresses and zero-fills rows
past L, so the kernels hold no tiles of pointer offsets (at D = 128 on sm_90 the pointer forward needs 255 registers
and spills; this one 159-175, unspilled). `SPLIT` runs the forward's visit as three loops (masked, unmasked, masked)
instead of one loop with a per-tile branch.

`st_attention`'s Triton backend takes these on CUDA devices of compute capability >= 9 (`enabled`), the pointer
kernels elsewhere: measured on an H200 (benchmarks/README.md, "Attention kernel"), 1.10-1.13x faster per kernel.
Import only through `genba.kernels` (lazily): it imports triton. Triton's interpreter runs them on CPU (tests).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from genba import keys
from genba.errors import GenbaError
from genba.kernels import triton_attention
from genba.kernels.triton_attention import INTERPRET, INTERPRET_BLOCKS, _allowed, _inner_range, _prec, check_runnable


@triton.jit
def _tiles(acc, l_i, m_i, q, desc_k, desc_v, bh, fq, start, stop, full_lo, full_hi, qk_scale, L, N, W,
           HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
           BLOCK_N: tl.constexpr, MASK: tl.constexpr):  # fmt: skip
    """Key tiles [start, stop) into the running softmax; MASK 0: none, 1: every tile, 2: outside [full_lo, full_hi)."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(start, stop, BLOCK_N):
        k = desc_k.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)  # rows past L arrive as zeros
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BM, BN), log2 units
        if (MASK == 1) | ((MASK == 2) & ((start_n < full_lo) | (start_n >= full_hi))):
            offs_n = start_n + offs_n0
            ok = _allowed(fq[:, None] - (offs_n // N)[None, :], W, CAUSAL, WINDOW) & (offs_n < L)[None, :]
            qk = tl.where(ok, qk, -1.0e30)  # finite: see triton_attention._fwd_kernel on fully masked rows
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = desc_v.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _fwd_tma_kernel(desc_q, desc_k, desc_v, desc_o, LSE, qk_scale, L, N, F, W,
                    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q = desc_q.load([bh, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)  # (BM, D)
    fq = tl.minimum(offs_m, L - 1) // N  # rows past L act as the last row: no row without keys
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    back = W - 1 if WINDOW else F
    fwd = 0 if CAUSAL else (W - 1 if WINDOW else F)
    lo, full_lo, full_hi, hi = _inner_range(start_m, L, N, F, back, fwd, BLOCK_M, BLOCK_N)
    if SPLIT:
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, desc_k, desc_v, bh, fq, lo, full_lo, full_lo, full_hi, qk_scale,
                               L, N, W, HEAD_DIM, CAUSAL, WINDOW, PREC, BLOCK_N, 1)  # fmt: skip
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, desc_k, desc_v, bh, fq, full_lo, full_hi, full_lo, full_hi,
                               qk_scale, L, N, W, HEAD_DIM, CAUSAL, WINDOW, PREC, BLOCK_N, 0)  # fmt: skip
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, desc_k, desc_v, bh, fq, full_hi, hi, full_lo, full_hi, qk_scale,
                               L, N, W, HEAD_DIM, CAUSAL, WINDOW, PREC, BLOCK_N, 1)  # fmt: skip
    else:
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, desc_k, desc_v, bh, fq, lo, hi, full_lo, full_hi, qk_scale,
                               L, N, W, HEAD_DIM, CAUSAL, WINDOW, PREC, BLOCK_N, 2)  # fmt: skip
    out = (acc / l_i[:, None]).to(desc_o.dtype)
    desc_o.store([bh, start_m, 0], out.reshape(1, BLOCK_M, HEAD_DIM))  # rows past L are not written
    tl.store(LSE + bh.to(tl.int64) * L + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < L)


@triton.jit
def _bwd_dq_tma_kernel(desc_q, desc_k, desc_v, desc_do, LSE, DELTA, desc_dq, sm_scale, qk_scale, L, N, F, W,
                       HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """triton_attention._bwd_dq_kernel with descriptor tiles."""
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    q_ok = offs_m < L
    q = desc_q.load([bh, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
    do = desc_do.load([bh, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
    lse = tl.load(LSE + bh.to(tl.int64) * L + offs_m, mask=q_ok, other=0.0)
    delta = tl.load(DELTA + bh.to(tl.int64) * L + offs_m, mask=q_ok, other=0.0)
    fq = tl.minimum(offs_m, L - 1) // N
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    back = W - 1 if WINDOW else F
    fwd = 0 if CAUSAL else (W - 1 if WINDOW else F)
    lo, full_lo, full_hi, hi = _inner_range(start_m, L, N, F, back, fwd, BLOCK_M, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        k = desc_k.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
        v = desc_v.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        p = tl.math.exp2(qk - lse[:, None])
        if (start_n < full_lo) | (start_n >= full_hi):
            offs_n = start_n + offs_n0
            ok = _allowed(fq[:, None] - (offs_n // N)[None, :], W, CAUSAL, WINDOW) & (offs_n < L)[None, :]
            p = tl.where(ok, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    desc_dq.store([bh, start_m, 0], (dq * sm_scale).to(desc_dq.dtype).reshape(1, BLOCK_M, HEAD_DIM))


@triton.jit
def _bwd_dkdv_tma_kernel(desc_q, desc_k, desc_v, desc_do, LSE, DELTA, desc_dk, desc_dv, sm_scale, qk_scale,
                         L, N, F, W, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr,
                         PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """triton_attention._bwd_dkdv_kernel with descriptor tiles (queries arrive row-major and are transposed on chip)."""
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    k = desc_k.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
    v = desc_v.load([bh, start_n, 0]).reshape(BLOCK_N, HEAD_DIM)
    fk = tl.minimum(offs_n, L - 1) // N
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    back = 0 if CAUSAL else (W - 1 if WINDOW else F)
    fwd = W - 1 if WINDOW else F
    lo, full_lo, full_hi, hi = _inner_range(start_n, L, N, F, back, fwd, BLOCK_N, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        q_ok = offs_m < L
        q = desc_q.load([bh, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
        do = desc_do.load([bh, start_m, 0]).reshape(BLOCK_M, HEAD_DIM)
        lse = tl.load(LSE + bh.to(tl.int64) * L + offs_m, mask=q_ok, other=0.0)
        delta = tl.load(DELTA + bh.to(tl.int64) * L + offs_m, mask=q_ok, other=0.0)
        qk_t = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale  # (BN, BM): keys x queries
        p_t = tl.math.exp2(qk_t - lse[None, :])
        if (start_m < full_lo) | (start_m >= full_hi):
            ok = _allowed((offs_m // N)[None, :] - fk[:, None], W, CAUSAL, WINDOW) & q_ok[None, :]
            p_t = tl.where(ok, p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PREC)
    desc_dk.store([bh, start_n, 0], (dk * sm_scale).to(desc_dk.dtype).reshape(1, BLOCK_N, HEAD_DIM))
    desc_dv.store([bh, start_n, 0], dv.to(desc_dv.dtype).reshape(1, BLOCK_N, HEAD_DIM))


# ----------------------------------------------------------------------------------------------------------------
# host side. Candidates per kernel: (BLOCK_M, BLOCK_N, warps, stages[, SPLIT]); for dK/dV BLOCK_N is the key tile a
# program owns. Each compiles unspilled for sm_90 at D = 128 (tests/kernels/test_compile_sm90.py); they are the
# fastest of gpu_session.py's sweep on an H200 (2026-12-01, bf16, D = 128, F = 16, N = 256, causal), first each
# kernel's fastest: forward 1.17 ms (pointer kernel's best 1.32), dQ 1.39 (1.53), dK/dV 2.00 (2.21). The 8-warp
# dK/dV tiles ran 2-2.7x slower there, as with the pointer kernels; warp specialization is Blackwell-only in
# Triton 3.6 (tl.range's warp_specialize), so none is tried.
CANDIDATES = {
    "fwd": [(64, 64, 4, 3, 1), (64, 64, 4, 3, 0), (128, 128, 8, 3, 1), (128, 64, 8, 3, 1)],
    "dq": [(128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 4, 2), (64, 32, 4, 3)],
    "dkdv": [(64, 64, 4, 2), (32, 64, 4, 3), (32, 64, 4, 2), (32, 128, 8, 3)],
}
_ROWS = {"desc_q": "BLOCK_M", "desc_o": "BLOCK_M", "desc_do": "BLOCK_M", "desc_dq": "BLOCK_M",
         "desc_k": "BLOCK_N", "desc_v": "BLOCK_N", "desc_dk": "BLOCK_N", "desc_dv": "BLOCK_N"}  # fmt: skip
KERNELS = {"fwd": _fwd_tma_kernel, "dq": _bwd_dq_tma_kernel, "dkdv": _bwd_dkdv_tma_kernel}
FAMILIES = {"auto": None, "tma": True, "pointer": False}


def family(name: str) -> bool | None:
    """auto | tma | pointer -> None | True | False (the values of USE), or one line naming the choices."""
    if name not in FAMILIES:
        raise GenbaError(f"Triton kernels {name!r} is not one of {', '.join(FAMILIES)} (${keys.TRITON_KERNELS_ENV})")
    return FAMILIES[name]


# None: these kernels on CUDA devices of compute capability >= 9, the pointer ones elsewhere; True / False force one
# family (benchmarks, tests, or a user's $GENBA_TRITON_KERNELS=pointer to step around a problem with descriptors).
USE: bool | None = family(os.environ.get(keys.TRITON_KERNELS_ENV, "auto"))


def enabled(device: torch.device) -> bool:
    """Whether `st_attention`'s Triton backend takes these kernels on `device` (else the pointer kernels)."""
    sm90 = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9
    if USE is None:
        return sm90
    if USE and device.type == "cuda" and not sm90:
        major, minor = torch.cuda.get_device_capability(device)
        raise GenbaError(
            f"the descriptor (TMA) kernels need compute capability >= 9.0, this GPU has {major}.{minor}; "
            f"unset ${keys.TRITON_KERNELS_ENV} or set it to pointer"
        )
    return USE


def _set_blocks(nargs: dict) -> None:
    """Autotuner pre-hook: the descriptors' tiles follow the configuration being launched."""
    for name, rows in _ROWS.items():
        if name in nargs:
            nargs[name].block_shape = [1, nargs[rows], nargs["HEAD_DIM"]]


def _config(c: tuple[int, ...]) -> triton.Config:
    kwargs = {"BLOCK_M": c[0], "BLOCK_N": c[1]} | ({"SPLIT": c[4]} if len(c) > 4 else {})
    return triton.Config(kwargs, num_warps=c[2], num_stages=c[3], pre_hook=_set_blocks)


_KEY = ["L", "N", "W", "HEAD_DIM", "CAUSAL", "WINDOW", "PREC"]
_TUNED = (
    {}
    if INTERPRET
    else {
        name: triton.autotune([_config(c) for c in CANDIDATES[name]], key=_KEY)(kernel)
        for name, kernel in KERNELS.items()
    }
)


def descriptor(x: torch.Tensor, rows: int = 16) -> TensorDescriptor:
    """(B, H, L, D) contiguous -> a descriptor over its (B*H, L, D) view with (1, rows, D) tiles."""
    batch, heads, length, head_dim = x.shape
    view = x.view(batch * heads, length, head_dim)
    return TensorDescriptor(view, list(view.shape), list(view.stride()), [1, rows, head_dim])


def launch(name: str, grid_rows: str, length: int, bh: int, config: tuple[int, ...] | None, *args, **consts) -> None:
    """One kernel with `config`, the interpreter's tiles, or (CUDA, config None) the autotuner's choice."""
    if INTERPRET and config is None:
        config = (*INTERPRET_BLOCKS, 4, 1, 1)[: 5 if name == "fwd" else 4]
    if config is None:
        _TUNED[name][lambda meta: (triton.cdiv(length, meta[grid_rows]), bh)](*args, **consts)
        return
    meta = {"BLOCK_M": config[0], "BLOCK_N": config[1]} | ({"SPLIT": config[4]} if name == "fwd" else {})
    _set_blocks(dict(zip(KERNELS[name].arg_names, args, strict=False)) | meta | consts)  # as the autotuner would
    grid = (triton.cdiv(length, meta[grid_rows]), bh)
    KERNELS[name][grid](*args, **consts, **meta, num_warps=config[2], num_stages=config[3])


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tokens_per_frame: int,
    frame_window: int | None,
    causal: bool,
    scale: float,
    config: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """As `triton_attention.forward`; `config` (BLOCK_M, BLOCK_N, warps, stages, SPLIT) skips the autotuner."""
    check_runnable(q.device)
    batch, heads, length, head_dim = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((batch, heads, length), device=q.device, dtype=torch.float32)
    args = (*map(descriptor, (q, k, v, out)), lse, scale * math.log2(math.e))
    args += (length, tokens_per_frame, length // tokens_per_frame, frame_window or 0)
    consts = dict(HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=frame_window is not None, PREC=_prec(q.dtype))
    launch("fwd", "BLOCK_M", length, batch * heads, config, *args, **consts)
    return out, lse


def backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    tokens_per_frame: int,
    frame_window: int | None,
    causal: bool,
    scale: float,
    configs: tuple[tuple[int, ...] | None, tuple[int, ...] | None] = (None, None),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As `triton_attention.backward`; `configs` (dQ's, dK/dV's) skip the autotuner."""
    check_runnable(q.device)
    batch, heads, length, head_dim = q.shape
    do = do.contiguous()
    delta = triton_attention.softmax_delta(out.contiguous(), do)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    consts = dict(HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=frame_window is not None, PREC=_prec(q.dtype))
    scalars = (scale, scale * math.log2(math.e), length, tokens_per_frame, length // tokens_per_frame)
    scalars += (frame_window or 0,)
    qd, kd, vd, dod = map(descriptor, (q, k, v, do))
    launch("dq", "BLOCK_M", length, batch * heads, configs[0], qd, kd, vd, dod, lse, delta, descriptor(dq),
           *scalars, **consts)  # fmt: skip
    launch("dkdv", "BLOCK_N", length, batch * heads, configs[1], qd, kd, vd, dod, lse, delta, descriptor(dk),
           descriptor(dv), *scalars, **consts)  # fmt: skip
    return dq, dk, dv


def compile_ahead(name: str, config: tuple[int, ...], *, arch: int = 90, dtype: str = "bf16", head_dim: int = 128,
                  causal: bool = True, window: bool = True):  # fmt: skip  # -> triton.compiler.CompiledKernel
    """Compile one kernel ("fwd", "dq", "dkdv") with `config` for compute capability `arch`, without a GPU
    (as triton_attention.compile_ahead): its PTX shows the copy engine (cp.async.bulk.tensor) and wgmma."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = KERNELS[name]
    consts = dict(HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=window, PREC="ieee" if dtype == "fp32" else "tf32")
    consts |= {"BLOCK_M": config[0], "BLOCK_N": config[1]} | ({"SPLIT": config[4]} if name == "fwd" else {})
    scalars = {"qk_scale": "fp32", "sm_scale": "fp32", "L": "i32", "N": "i32", "F": "i32", "W": "i32"}

    def arg_type(arg: str) -> str:
        if arg in consts:
            return "constexpr"
        if arg in _ROWS:
            return f"tensordesc<{dtype}[1,{consts[_ROWS[arg]]},{head_dim}]>"
        return scalars.get(arg) or "*fp32"  # LSE, DELTA

    signature = {arg: arg_type(arg) for arg in kernel.arg_names}
    return triton.compile(
        ASTSource(kernel, signature, consts),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config[2], "num_stages": config[3]},
    )
