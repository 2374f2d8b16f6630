"""The specification (reference), the sdpa and flex backends against it, `auto`, and the input errors."""

import itertools
import math

import pytest
import torch

from genba.errors import GenbaError
from genba.kernels import BACKENDS, frame_mask, reference_attention, resolve_backend, st_attention, useful_pairs


def _by_definition(q, k, v, n, window, causal):
    """Row by row, straight from the issue's words, in float64: frame i sees frames j with i - W < j <= i."""
    batch, heads, length, head_dim = q.shape
    out = torch.zeros(batch, heads, length, head_dim, dtype=torch.float64)
    for i in range(length):
        fi = i // n
        if causal:
            lo = 0 if window is None else max(0, fi - window + 1)
            frames = range(lo, fi + 1)
        else:
            frames = range(length // n) if window is None else [j for j in range(length // n) if abs(fi - j) < window]
        keys = [j * n + t for j in frames for t in range(n)]
        scores = q[:, :, i : i + 1].double() @ k[:, :, keys].double().transpose(-2, -1) / math.sqrt(head_dim)
        out[:, :, i] = (scores.softmax(-1) @ v[:, :, keys].double())[:, :, 0]
    return out


@pytest.mark.parametrize(("n", "frames", "window", "causal"), [(1, 5, None, True), (3, 4, 2, True), (2, 5, 2, False)])
def test_reference_is_the_definition(n, frames, window, causal):
    q, k, v = (torch.randn(1, 2, frames * n, 32) for _ in range(3))
    got = reference_attention(q, k, v, tokens_per_frame=n, frame_window=window, causal=causal)
    torch.testing.assert_close(got.double(), _by_definition(q, k, v, n, window, causal), atol=1e-5, rtol=0)


def test_mask_shapes_the_cost():
    """W = 1 is block-diagonal, causal is (F+1)/2F of dense, a window of W frames is linear in F."""
    n, frames = 4, 8
    assert torch.equal(frame_mask(frames * n, n, 1, True), torch.block_diag(*[torch.ones(n, n)] * frames).bool())
    dense = (frames * n) ** 2
    assert useful_pairs(frames, n, None, True) == dense * (frames + 1) // (2 * frames)
    assert useful_pairs(frames, n, None, False) == dense
    assert useful_pairs(frames, n, 2, True) == (2 * frames - 1) * n * n
    assert useful_pairs(frames, n, 3, False) == int(frame_mask(frames * n, n, 3, False).sum())


CASES = list(itertools.product((1, 7), (1, 3), (None, 1, 4), (True, False)))


@pytest.mark.parametrize(("n", "frames", "window", "causal"), CASES)
def test_sdpa_matches_reference(n, frames, window, causal):
    q, k, v = (torch.randn(2, 2, frames * n, 32, requires_grad=True) for _ in range(3))
    kw = dict(tokens_per_frame=n, frame_window=window, causal=causal)
    out = st_attention(q, k, v, backend="sdpa", **kw)
    ref = reference_attention(q, k, v, **kw)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    do = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, (q, k, v), do), torch.autograd.grad(ref, (q, k, v), do), strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("n", "frames", "window", "causal"), [(7, 3, None, True), (7, 3, 1, False), (5, 9, 4, True)])
def test_flex_matches_reference(n, frames, window, causal):
    q, k, v = (torch.randn(1, 2, frames * n, 64) for _ in range(3))
    kw = dict(tokens_per_frame=n, frame_window=window, causal=causal, scale=0.2)
    torch.testing.assert_close(
        st_attention(q, k, v, backend="flex", **kw), reference_attention(q, k, v, **kw), atol=1e-5, rtol=0
    )


def test_flex_refuses_backward_on_cpu():
    q = torch.randn(1, 1, 8, 32, requires_grad=True)
    with pytest.raises(GenbaError, match="no backward on CPU"):
        st_attention(q, q, q, tokens_per_frame=4, backend="flex")


def test_auto_on_cpu_is_correct_and_low_precision_keeps_dtype():
    assert resolve_backend("auto", "cpu") in ("reference", "sdpa", "flex")
    assert resolve_backend("auto", "cuda") == "triton"
    q, k, v = (torch.randn(1, 2, 12, 32) for _ in range(3))
    torch.testing.assert_close(
        st_attention(q, k, v, tokens_per_frame=4, frame_window=2),
        reference_attention(q, k, v, tokens_per_frame=4, frame_window=2),
        atol=1e-5,
        rtol=0,
    )
    out = st_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), tokens_per_frame=4, backend="reference")
    assert out.dtype == torch.bfloat16


GOOD = torch.zeros(1, 2, 12, 32)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.zeros(1, 2, 12, 48),) * 3, {}, r"head dim D=48 is not supported \(valid: 32, 64, 128\)"),
        ((GOOD,) * 3, {"tokens_per_frame": 5}, "L=12 is not a positive multiple of tokens_per_frame=5"),
        ((GOOD, GOOD.half(), GOOD), {}, "must share one dtype"),
        ((GOOD.double(),) * 3, {}, "must share one dtype of float32, float16, bfloat16"),
        ((GOOD,) * 3, {"backend": "cuda"}, r"unknown attention backend 'cuda' \(valid: auto, reference, sdpa"),
        ((GOOD, torch.zeros(1, 2, 8, 32), GOOD), {}, "same shape"),
        ((torch.zeros(2, 12, 32),) * 3, {}, r"must be \(B, H, L, D\)"),
        ((GOOD,) * 3, {"frame_window": 0}, "frame_window must be None or an int >= 1, got 0"),
        ((GOOD,) * 3, {"tokens_per_frame": 0}, "tokens_per_frame must be a positive int"),
    ],
)
def test_bad_input_is_one_clear_line(args, kwargs, message):
    kwargs = {"tokens_per_frame": 4, **kwargs}
    with pytest.raises(GenbaError, match=message) as info:
        st_attention(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_every_backend_is_listed():
    assert set(BACKENDS) == {"auto", "reference", "sdpa", "flex", "triton"}


def test_without_triton_the_package_imports_and_triton_is_refused():
    """A machine without triton: `import genba.kernels` works, the torch backends run, triton is one clear error."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, genba.kernels as gk\n"
        "from genba.errors import GenbaError\n"
        "q = torch.randn(1, 1, 8, 32)\n"
        "gk.st_attention(q, q, q, tokens_per_frame=4)\n"
        "try:\n"
        "    gk.st_attention(q, q, q, tokens_per_frame=4, backend='triton')\n"
        "except GenbaError as e:\n"
        "    print('refused:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused: backend='triton' needs the triton package, which is not installed" in result.stdout


def test_triton_on_cpu_without_the_interpreter_is_one_clear_line():
    """In a process without TRITON_INTERPRET=1 (or with it set too late), CPU tensors are refused, not crashed on."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys, torch, triton\n"
        "from genba.errors import GenbaError\n"
        "from genba.kernels import st_attention\n"
        "q = torch.randn(1, 1, 8, 32)\n"
        "if sys.argv[1] == 'late':\n"
        "    os.environ['TRITON_INTERPRET'] = '1'\n"
        "try:\n"
        "    st_attention(q, q, q, tokens_per_frame=4, backend='triton')\n"
        "except GenbaError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for when, message in [
        ("never", "needs CUDA tensors (got cpu)"),
        ("late", "was set after triton had been imported"),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", code, when], capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "refused:" in result.stdout and message in result.stdout, result.stdout
