"""Frame-block attention in Triton: forward (online softmax, log-sum-exp saved) and backward (dQ, dK/dV kernels).

The mask is the one in `reference.py`. Knowing the frame structure, each program computes which tiles it has to
visit at all (tiles of frames outside the window are never loaded, so causal costs about (F+1)/2F of dense attention
and a sliding window is linear in F) and which of those lie fully inside the mask for all its rows; only the tiles
that straddle a frame boundary, the window edge or the end of the sequence compute the mask.

Import this module only through `genba.kernels` (lazily): it imports triton. On CPU tensors the kernels run only under
Triton's interpreter, which must be switched on (TRITON_INTERPRET=1) before triton is first imported in the process,
because triton.language's own helpers (tl.zeros, tl.max, ...) are compiled or interpreted at their import.
On CUDA the block sizes, warps and stages are autotuned per (L, N, D, window, causal, dtype) among candidates
measured on an H200.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from genba.errors import GenbaError

INTERPRET = bool(triton.knobs.runtime.interpret)
# Tiles under the interpreter: tl.dot needs >= 16; tests pass smaller blocks than the GPU's to cross more boundaries.
INTERPRET_BLOCKS = (16, 16)
DELTA_ROWS = 64  # rows per program of the memory-bound delta pass: a 64 x 128 tile of each input


def check_runnable(device: torch.device) -> None:
    """Refuse, with one line, the combinations that would crash deep inside triton."""
    if device.type == "cuda":
        return
    if not INTERPRET:
        raise GenbaError(
            f"backend='triton' needs CUDA tensors (got {device.type}); on CPU it runs only under Triton's "
            "interpreter: set TRITON_INTERPRET=1 before Python starts (tests do), or use backend='auto'"
        )
    if type(tl.zeros).__name__ != "InterpretedFunction":
        raise GenbaError(
            "TRITON_INTERPRET=1 was set after triton had been imported in this process; set it before Python starts"
        )


# ----------------------------------------------------------------------------------------------------------------
# device helpers


@triton.jit
def _allowed(d, W, CAUSAL: tl.constexpr, WINDOW: tl.constexpr):
    """d = query frame - key frame (any shape) -> bool, the rule of reference.frame_allowed."""
    if CAUSAL:
        ok = d >= 0
        if WINDOW:
            ok = ok & (d < W)
    else:
        ok = (d < W) & (d > -W) if WINDOW else d == d
    return ok


@triton.jit
def _inner_range(o_start, L, N, F, back, fwd, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
    """For the outer tile [o_start, o_start + BLOCK_O), the inner tiles to visit, as token offsets.

    An outer token of frame f meets inner frames [f - back, f + fwd]. Returns lo <= full_lo <= full_hi <= hi:
    [lo, full_lo) and [full_hi, hi) need the mask, [full_lo, full_hi) is inside it for every outer row
    (inner frames [f_hi - back, f_lo + fwd], whole tiles only, none past L).
    """
    o_last = tl.minimum(o_start + BLOCK_O, L) - 1
    f_lo = o_start // N
    f_hi = o_last // N
    lo = (tl.maximum(f_lo - back, 0) * N) // BLOCK_I * BLOCK_I
    hi = tl.minimum((tl.minimum(f_hi + fwd, F - 1) + 1) * N, L)
    full_lo = tl.minimum((tl.maximum(f_hi - back, 0) * N + BLOCK_I - 1) // BLOCK_I * BLOCK_I, hi)
    full_hi = tl.minimum((tl.minimum(f_lo + fwd, F - 1) + 1) * N, L) // BLOCK_I * BLOCK_I
    full_hi = tl.maximum(full_hi, full_lo)
    return lo, full_lo, full_hi, hi


# ----------------------------------------------------------------------------------------------------------------
# forward
#
# One loop per program over the tiles it must visit; the mask is computed only on tiles outside [full_lo, full_hi).
# (Three loops, masked / unmasked / masked, compile to kernels that spill registers at D = 128 on sm_90: measured
# with compile_ahead; one loop with a per-tile branch does not.)


@triton.jit
def _fwd_kernel(Q, K, V, Out, LSE, qk_scale, L, N, F, W,
                HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    # this (batch, head): one 64-bit scalar offset per pointer, then 32-bit tile offsets (64-bit tiles spill)
    base = bh.to(tl.int64) * L * HEAD_DIM
    Q += base
    K += base
    V += base
    Out += base
    LSE += bh.to(tl.int64) * L
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ok = offs_m < L
    ptrs = offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    q = tl.load(Q + ptrs, mask=q_ok[:, None], other=0.0)
    fq = tl.minimum(offs_m, L - 1) // N  # rows past L act as the last row: no row without keys
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    back = W - 1 if WINDOW else F
    fwd = 0 if CAUSAL else (W - 1 if WINDOW else F)
    lo, full_lo, full_hi, hi = _inner_range(start_m, L, N, F, back, fwd, BLOCK_M, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k_ok = offs_n < L
        kv_ptrs = offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_ptrs, mask=k_ok[:, None], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BM, BN), log2 units
        if (start_n < full_lo) | (start_n >= full_hi):
            ok = _allowed(fq[:, None] - (offs_n // N)[None, :], W, CAUSAL, WINDOW) & k_ok[None, :]
            qk = tl.where(ok, qk, -1.0e30)  # finite: no NaN when a whole row is masked
        # A fully masked row gets m = -1e30 and p = 1 here; its own frame comes later with a real maximum, and
        # alpha = exp2(-1e30 - m) = 0 then wipes that junk out. Every row has its own frame, so it always comes.
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + kv_ptrs, mask=k_ok[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_ij
    tl.store(Out + ptrs, (acc / l_i[:, None]).to(Out.dtype.element_ty), mask=q_ok[:, None])
    tl.store(LSE + offs_m, m_i + tl.math.log2(l_i), mask=q_ok)


# ----------------------------------------------------------------------------------------------------------------
# backward: delta = rowsum(dO * O) first, then dQ per query tile (keys as in the forward), dK and dV per key tile
# (queries that see it); no atomics


@triton.jit
def _bwd_delta_kernel(OUT, DO, DELTA, L, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """DELTA (B*H, L) fp32 = rowsum(dO * OUT): one read of each, where torch's (out.float() * do.float()).sum(-1)
    wrote two fp32 copies and their product (about 5x the bytes; 0.3 ms of 4.8 at the H200 target shape, estimated)."""
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    ok = offs_m < L
    ptrs = bh.to(tl.int64) * L * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    o = tl.load(OUT + ptrs, mask=ok[:, None], other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=ok[:, None], other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * L + offs_m, tl.sum(o * do, 1), mask=ok)


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, sm_scale, qk_scale, L, N, F, W,
                   HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    base = bh.to(tl.int64) * L * HEAD_DIM
    Q += base
    K += base
    V += base
    DO += base
    DQ += base
    LSE += bh.to(tl.int64) * L
    DELTA += bh.to(tl.int64) * L
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ok = offs_m < L
    ptrs = offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    q = tl.load(Q + ptrs, mask=q_ok[:, None], other=0.0)
    do = tl.load(DO + ptrs, mask=q_ok[:, None], other=0.0)
    lse = tl.load(LSE + offs_m, mask=q_ok, other=0.0)
    delta = tl.load(DELTA + offs_m, mask=q_ok, other=0.0)
    fq = tl.minimum(offs_m, L - 1) // N
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    back = W - 1 if WINDOW else F
    fwd = 0 if CAUSAL else (W - 1 if WINDOW else F)
    lo, full_lo, full_hi, hi = _inner_range(start_m, L, N, F, back, fwd, BLOCK_M, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k_ok = offs_n < L
        kv_ptrs = offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_ptrs, mask=k_ok[:, None], other=0.0)
        v = tl.load(V + kv_ptrs, mask=k_ok[:, None], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        p = tl.math.exp2(qk - lse[:, None])
        if (start_n < full_lo) | (start_n >= full_hi):
            ok = _allowed(fq[:, None] - (offs_n // N)[None, :], W, CAUSAL, WINDOW) & k_ok[None, :]
            p = tl.where(ok, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    tl.store(DQ + ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_ok[:, None])


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, sm_scale, qk_scale, L, N, F, W,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, PREC: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    base = bh.to(tl.int64) * L * HEAD_DIM
    Q += base
    K += base
    V += base
    DO += base
    DK += base
    DV += base
    LSE += bh.to(tl.int64) * L
    DELTA += bh.to(tl.int64) * L
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    k_ok = offs_n < L
    ptrs = offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    k = tl.load(K + ptrs, mask=k_ok[:, None], other=0.0)
    v = tl.load(V + ptrs, mask=k_ok[:, None], other=0.0)
    fk = tl.minimum(offs_n, L - 1) // N  # columns past L are never stored; keep them finite
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # seen from a key of frame f, the queries that see it are of frames [f - fwd, f + back]
    back = 0 if CAUSAL else (W - 1 if WINDOW else F)
    fwd = W - 1 if WINDOW else F
    lo, full_lo, full_hi, hi = _inner_range(start_n, L, N, F, back, fwd, BLOCK_N, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        q_ok = offs_m < L
        # q read transposed, (D, BM), straight from memory: the layout the keys x queries product wants
        q_t = tl.load(Q + offs_m[None, :] * HEAD_DIM + offs_d[:, None], mask=q_ok[None, :], other=0.0)
        do = tl.load(DO + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=q_ok[:, None], other=0.0)
        lse = tl.load(LSE + offs_m, mask=q_ok, other=0.0)
        delta = tl.load(DELTA + offs_m, mask=q_ok, other=0.0)
        qk_t = tl.dot(k, q_t, input_precision=PREC) * qk_scale  # (BN, BM): keys x queries
        p_t = tl.math.exp2(qk_t - lse[None, :])
        if (start_m < full_lo) | (start_m >= full_hi):
            ok = _allowed((offs_m // N)[None, :] - fk[:, None], W, CAUSAL, WINDOW) & q_ok[None, :]
            p_t = tl.where(ok, p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), input_precision=PREC)
    tl.store(DK + ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=k_ok[:, None])
    tl.store(DV + ptrs, dv.to(DV.dtype.element_ty), mask=k_ok[:, None])


# ----------------------------------------------------------------------------------------------------------------
# Hopper autotuning. Every candidate (BLOCK_M, BLOCK_N, warps, stages) compiles for sm_90 onto wgmma; stages pipeline
# the tile loads through shared memory. For dK/dV, BLOCK_N is the key tile a program owns and BLOCK_M the query tile
# it loops over. The D <= 128 candidates are the fastest of benchmarks/gpu_session.py's sweep of 76 configurations on
# an H200 (2026-11-30, bf16, D = 128, F = 16, N = 256, causal): no or few register spills there (the 8-warp dK/dV
# tiles of the first list ran 2-5x slower than 4-warp ones). The first D = 128 candidate of each kernel is the one
# tests/kernels/test_compile_sm90.py checks unspilled without a GPU.
_CANDIDATES = {  # name: [(BLOCK_M, BLOCK_N, warps, stages, largest D)]
    "fwd": [
        *[(128, 32, 8, s, 128) for s in (3, 4)],
        (64, 64, 4, 3, 128),
        (128, 64, 8, 3, 128),
        (128, 128, 8, 3, 128),
        (64, 32, 4, 2, 128),
        (128, 128, 8, 2, 64),
        (64, 64, 4, 2, 64),
    ],
    "dq": [
        *[(128, 32, 8, s, 128) for s in (3, 2)],
        (128, 64, 8, 3, 128),
        (64, 64, 4, 2, 128),
        *[(64, 32, 4, s, 128) for s in (3, 2)],
    ],
    "dkdv": [
        (64, 64, 8, 2, 128),
        *[(32, 64, 4, s, 128) for s in (3, 2)],
        (64, 128, 8, 3, 128),
        (64, 64, 4, 2, 128),
        (32, 128, 8, 3, 128),
        (32, 128, 8, 2, 64),
        (64, 128, 8, 2, 64),
    ],
}
_KEY = ["L", "N", "W", "HEAD_DIM", "CAUSAL", "WINDOW", "PREC"]


def _configs(name: str) -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s, _ in _CANDIDATES[name]
    ]


def _max_dims(name: str) -> dict[tuple[int, int, int, int], int]:
    return {(bm, bn, w, s): d for bm, bn, w, s, d in _CANDIDATES[name]}


def _pruner(name: str) -> Callable[..., list[triton.Config]]:
    max_dims = _max_dims(name)

    def prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
        """The candidates that do not spill at this D; of those, the tiles no longer than the sequence, if any."""
        length, head_dim = named_args["L"], kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
        fits = [c for c in configs if head_dim <= max_dims[(*c.kwargs.values(), c.num_warps, c.num_stages)]]
        cap = max(32, triton.next_power_of_2(length))
        short = [c for c in fits if c.kwargs["BLOCK_M"] <= cap and c.kwargs["BLOCK_N"] <= cap]
        return short or fits or configs

    return prune


_NAMES = {_fwd_kernel: "fwd", _bwd_dq_kernel: "dq", _bwd_dkdv_kernel: "dkdv"}
_TUNED = (
    {}
    if INTERPRET
    else {
        kernel: triton.autotune(_configs(name), key=_KEY, prune_configs_by={"early_config_prune": _pruner(name)})(
            kernel
        )
        for kernel, name in _NAMES.items()
    }
)


def _launch(kernel, grid_rows: str, length: int, bh: int, blocks: tuple[int, int] | None, *args, **consts):
    """Launch with the interpreter's fixed tiles (or the caller's), or let the autotuner pick them on CUDA."""
    if INTERPRET or blocks is not None:
        bm, bn = blocks or INTERPRET_BLOCKS
        rows = bm if grid_rows == "BLOCK_M" else bn
        kernel[(triton.cdiv(length, rows), bh)](*args, **consts, BLOCK_M=bm, BLOCK_N=bn)
    else:
        _TUNED[kernel][lambda meta: (triton.cdiv(length, meta[grid_rows]), bh)](*args, **consts)


def _prec(dtype: torch.dtype) -> str:
    # fp32 inputs get true fp32 products (the spec); tf32 would cost 1e-3 relative error. Ignored for 16-bit.
    return "ieee" if dtype == torch.float32 else "tf32"


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tokens_per_frame: int,
    frame_window: int | None,
    causal: bool,
    scale: float,
    blocks: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v contiguous (B, H, L, D) -> out (B, H, L, D), lse (B, H, L) fp32 in log2 units of the scaled scores."""
    check_runnable(q.device)
    batch, heads, length, head_dim = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((batch, heads, length), device=q.device, dtype=torch.float32)
    frames = length // tokens_per_frame
    _launch(
        _fwd_kernel, "BLOCK_M", length, batch * heads, blocks,
        q, k, v, out, lse, scale * math.log2(math.e), length, tokens_per_frame, frames, frame_window or 0,
        HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=frame_window is not None, PREC=_prec(q.dtype),
    )  # fmt: skip
    return out, lse


def softmax_delta(out: torch.Tensor, do: torch.Tensor) -> torch.Tensor:
    """out, do contiguous (B, H, L, D) -> rowsum(dO * O) (B, H, L) fp32, the softmax's correction in the backward."""
    batch, heads, length, head_dim = out.shape
    result = torch.empty((batch, heads, length), device=out.device, dtype=torch.float32)
    rows = INTERPRET_BLOCKS[0] if INTERPRET else DELTA_ROWS
    _bwd_delta_kernel[(triton.cdiv(length, rows), batch * heads)](
        out, do, result, length, HEAD_DIM=head_dim, BLOCK_M=rows
    )
    return result


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
    blocks: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (B, H, L, D) contiguous, lse (B, H, L) from `forward` -> dq, dk, dv (B, H, L, D)."""
    check_runnable(q.device)
    batch, heads, length, head_dim = q.shape
    do = do.contiguous()
    delta = softmax_delta(out.contiguous(), do)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    frames = length // tokens_per_frame
    consts = dict(HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=frame_window is not None, PREC=_prec(q.dtype))
    args = (scale, scale * math.log2(math.e), length, tokens_per_frame, frames, frame_window or 0)
    _launch(_bwd_dq_kernel, "BLOCK_M", length, batch * heads, blocks, q, k, v, do, lse, delta, dq, *args, **consts)
    _launch(
        _bwd_dkdv_kernel, "BLOCK_N", length, batch * heads, blocks, q, k, v, do, lse, delta, dk, dv, *args, **consts
    )
    return dq, dk, dv


def compile_ahead(
    kernel: str,
    *,
    arch: int = 90,
    dtype: str = "bf16",
    head_dim: int = 128,
    causal: bool = True,
    window: bool = True,
    block_m: int = 64,
    block_n: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
):  # -> triton.compiler.CompiledKernel
    """Compile one kernel ("fwd", "dq", "dkdv") for an NVIDIA GPU of compute capability `arch` without a GPU.

    triton ships ptxas, so a CPU-only machine can check that the kernels lower to Hopper's tensor-core
    instructions (wgmma in .asm["ptx"]) and how many registers they need (.asm["cubin"]).
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if INTERPRET:
        raise GenbaError("compile_ahead compiles for a GPU: run it with TRITON_INTERPRET unset")
    fn = {name: kernel_fn for kernel_fn, name in _NAMES.items()}[kernel]
    consts = dict(HEAD_DIM=head_dim, CAUSAL=causal, WINDOW=window, PREC="ieee" if dtype == "fp32" else "tf32")
    consts.update(BLOCK_M=block_m, BLOCK_N=block_n)
    scalars = {"qk_scale": "fp32", "sm_scale": "fp32", "L": "i32", "N": "i32", "F": "i32", "W": "i32"}

    def arg_type(name: str) -> str:
        if name in consts:
            return "constexpr"
        return scalars.get(name) or ("*fp32" if name in ("LSE", "DELTA") else f"*{dtype}")

    signature = {name: arg_type(name) for name in fn.arg_names}
    return triton.compile(
        ASTSource(fn, signature, consts),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "num_stages": num_stages},
    )
