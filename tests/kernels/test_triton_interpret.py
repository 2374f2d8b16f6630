"""The Triton kernel on CPU under TRITON_INTERPRET=1, fp32, against the reference: forward and all three gradients."""

import itertools
import math

import pytest
import torch

from genba.kernels import reference_attention, st_attention

pytestmark = [
    pytest.mark.usefixtures("interpreted"),
    # the interpreter turns our tensor loop bounds into 1-element arrays; numpy warns, harmlessly
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning"),  # the poisoned rows, on purpose
]

TOL = 2e-5  # fp32 with ieee dot products: the kernel's online softmax differs from the reference only by rounding


def _kernel(q, k, v, do, n, window, causal, blocks):
    from genba.kernels import triton_attention

    scale = 1.0 / math.sqrt(q.shape[-1])
    out, lse = triton_attention.forward(q, k, v, n, window, causal, scale, blocks)
    return (out, *triton_attention.backward(do, q, k, v, out, lse, n, window, causal, scale, blocks))


def _reference(q, k, v, do, n, window, causal):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = reference_attention(q, k, v, tokens_per_frame=n, frame_window=window, causal=causal)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _compare(batch, heads, frames, n, head_dim, window, causal, blocks):
    length = frames * n
    q, k, v, do = (torch.randn(batch, heads, length, head_dim) for _ in range(4))
    got = _kernel(q, k, v, do, n, window, causal, blocks)
    want = _reference(q, k, v, do, n, window, causal)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(g).all(), name
        err = (g - w).abs().max().item()
        assert err <= TOL, f"{name}: max error {err:.2e} (F={frames} N={n} W={window} causal={causal})"


# Every N x F x (window, causal) combination of the issue; tiles of 16 so that frames straddle tile edges, larger
# tiles only where the interpreter would be slow, and the largest shape on three of the six mask variants.
SHAPES = [(n, f) for n, f in itertools.product((1, 7, 65), (1, 3, 17)) if (n, f) != (65, 17)]
MASKS = list(itertools.product((None, 1, 4), (True, False)))


@pytest.mark.parametrize(("window", "causal"), MASKS, ids=[f"W{w}-{'causal' if c else 'full'}" for w, c in MASKS])
@pytest.mark.parametrize(("n", "frames"), SHAPES, ids=[f"N{n}-F{f}" for n, f in SHAPES])
def test_matches_reference(n, frames, window, causal):
    blocks = (16, 16) if n * frames <= 128 else (32, 32)
    _compare(1, 1, frames, n, 32, window, causal, blocks)


@pytest.mark.parametrize(("window", "causal"), [(4, True), (None, False), (1, True)])
def test_largest_shape(window, causal):
    _compare(1, 1, 17, 65, 32, window, causal, (64, 64))


@pytest.mark.parametrize(
    ("head_dim", "blocks", "window", "causal"),
    [(64, (16, 32), 2, True), (64, (32, 16), None, True), (128, (16, 16), 3, False), (128, (32, 16), None, True)],
)
def test_head_dims_and_uneven_tiles(head_dim, blocks, window, causal):
    """D = 64 and 128, and BLOCK_M != BLOCK_N (the dQ and dK/dV kernels tile the two axes differently)."""
    _compare(2, 2, 5, 9, head_dim, window, causal, blocks)


@pytest.mark.parametrize(("window", "causal"), [(1, True), (2, True), (2, False)])
def test_tiles_outside_the_window_are_never_read(window, causal):
    """Poison what no query may see with NaN: a kernel that loads it (even masked: 0 * NaN = NaN) fails.

    N = 16 = the tile size, so no tile straddles a frame; frames 0..1 are poisoned, rows of frames >= 1 + W
    must stay exact, and dK/dV of the clean frames must too when the later frames' queries are poisoned.
    """
    from genba.kernels import triton_attention

    frames, n, head_dim, scale = 6, 16, 32, 32**-0.5
    q, k, v, do = (torch.randn(1, 2, frames * n, head_dim) for _ in range(4))
    clean = _reference(q, k, v, do, n, window, causal)
    first_clean_row = (1 + window) * n
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[:, :, : 2 * n] = float("nan")
    v_bad[:, :, : 2 * n] = float("nan")
    out, lse = triton_attention.forward(q, k_bad, v_bad, n, window, causal, scale, (16, 16))
    torch.testing.assert_close(out[:, :, first_clean_row:], clean[0][:, :, first_clean_row:], atol=TOL, rtol=0)
    dq, _, _ = triton_attention.backward(do, q, k_bad, v_bad, out, lse, n, window, causal, scale, (16, 16))
    torch.testing.assert_close(dq[:, :, first_clean_row:], clean[1][:, :, first_clean_row:], atol=TOL, rtol=0)
    # keys of frames 0..1 are seen only by queries of frames <= W (causal or not): poison the later ones
    last_seeing = 1 + window
    q_bad, do_bad = q.clone(), do.clone()
    q_bad[:, :, last_seeing * n :] = float("nan")
    do_bad[:, :, last_seeing * n :] = float("nan")
    out, lse = triton_attention.forward(q_bad, k, v, n, window, causal, scale, (16, 16))
    _, dk, dv = triton_attention.backward(do_bad, q_bad, k, v, out, lse, n, window, causal, scale, (16, 16))
    torch.testing.assert_close(dk[:, :, : 2 * n], clean[2][:, :, : 2 * n], atol=TOL, rtol=0)
    torch.testing.assert_close(dv[:, :, : 2 * n], clean[3][:, :, : 2 * n], atol=TOL, rtol=0)


def test_public_api_custom_op_and_autograd():
    """st_attention(backend="triton") goes through the custom op; gradients flow through its registered backward,
    also for non-contiguous inputs and a custom scale."""
    frames, n, head_dim = 3, 7, 32
    base = [torch.randn(2, frames * n, 2, head_dim, requires_grad=True) for _ in range(3)]
    q, k, v = (t.transpose(1, 2) for t in base)  # (B, H, L, D) views, not contiguous
    kw = dict(tokens_per_frame=n, frame_window=2, causal=True, scale=0.3)
    out = st_attention(q, k, v, backend="triton", **kw)
    grads = torch.autograd.grad(out.square().sum(), base)
    ref = reference_attention(q, k, v, **kw)
    ref_grads = torch.autograd.grad(ref.square().sum(), base)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=5 * TOL, rtol=0)
