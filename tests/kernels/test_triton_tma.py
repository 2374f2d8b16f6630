"""The descriptor (TMA) kernels on CPU under TRITON_INTERPRET=1, fp32: the reference's values, through the op too."""

import math
import os
import subprocess
import sys

import pytest
import torch

from genba.kernels import reference_attention, st_attention

pytestmark = [
    pytest.mark.usefixtures("interpreted"),
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
]

TOL = 2e-5  # as test_triton_interpret.py: fp32 with ieee products differs from the reference by rounding only


def _reference(q, k, v, do, n, window, causal):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = reference_attention(q, k, v, tokens_per_frame=n, frame_window=window, causal=causal)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _kernels(q, k, v, do, n, window, causal, fwd_config, bwd_config):
    from genba.kernels import triton_tma

    scale = 1.0 / math.sqrt(q.shape[-1])
    out, lse = triton_tma.forward(q, k, v, n, window, causal, scale, fwd_config)
    grads = triton_tma.backward(do, q, k, v, out, lse, n, window, causal, scale, (bwd_config, bwd_config))
    return out, *grads


def _check(got, want, what):
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(g).all(), f"{name}: not finite ({what})"
        err = (g - w).abs().max().item()
        assert err <= TOL, f"{name}: max error {err:.2e} ({what})"


# tiles of 16 so that frames straddle tile edges and L is not a multiple of the tile (rows past L come back as the
# copy engine's zeros and must be masked); both visiting orders (one loop with a branch, three loops)
CASES = [
    # (frames, N, D, window, causal, (BLOCK_M, BLOCK_N), SPLIT)
    (3, 16, 32, None, True, (16, 16), 1),
    (4, 13, 32, 2, True, (16, 16), 0),
    (4, 13, 32, 2, True, (16, 16), 1),
    (3, 20, 16, None, False, (32, 16), 1),
    (5, 7, 32, 3, False, (16, 32), 0),
    (1, 40, 32, None, True, (16, 16), 1),
    (6, 1, 16, 2, True, (16, 16), 1),
    (17, 7, 32, 4, True, (32, 16), 1),
]


@pytest.mark.parametrize(("frames", "n", "d", "window", "causal", "blocks", "split"), CASES)
def test_matches_reference(frames, n, d, window, causal, blocks, split):
    q, k, v, do = (torch.randn(2, 2, frames * n, d) for _ in range(4))
    got = _kernels(q, k, v, do, n, window, causal, (*blocks, 4, 1, split), (*blocks, 4, 1))
    _check(got, _reference(q, k, v, do, n, window, causal), f"F={frames} N={n} W={window} causal={causal}")


SAME_TILES = """
import torch
from genba.kernels import triton_attention, triton_tma

torch.manual_seed(0)
n, window, causal, blocks = 11, 3, True, (16, 16)
q, k, v, do = (torch.randn(1, 2, 5 * n, 32) for _ in range(4))
scale = 32**-0.5
out, lse = triton_attention.forward(q, k, v, n, window, causal, scale, blocks)
want = (out, *triton_attention.backward(do, q, k, v, out, lse, n, window, causal, scale, blocks))
out, lse = triton_tma.forward(q, k, v, n, window, causal, scale, (*blocks, 4, 1, 0))
got = (out, *triton_tma.backward(do, q, k, v, out, lse, n, window, causal, scale, ((*blocks, 4, 1), (*blocks, 4, 1))))
print(" ".join(name for name, g, w in zip(("out", "dq", "dk", "dv"), got, want) if not torch.equal(g, w)))
"""


def test_same_tiles_give_the_pointer_kernels_results_exactly():
    # The interpreter runs tl.dot through NumPy's BLAS, whose AVX-512 kernels (OpenBLAS's SkylakeX, chosen on such
    # CPUs) round a transposed operand's products differently (dK, dV off by ~1e-6). Exactness is a property of the
    # tiles and their order, so the comparison runs with OpenBLAS's AVX2 kernels, the same on every x86-64 machine.
    env = os.environ | {"TRITON_INTERPRET": "1", "OPENBLAS_CORETYPE": "Haswell"}
    result = subprocess.run([sys.executable, "-c", SAME_TILES], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"differ from the pointer kernels: {result.stdout.strip()}"


@pytest.mark.parametrize(
    ("use", "device_type", "want"), [(None, "cpu", False), (True, "cpu", True), (False, "cpu", False)]
)
def test_enabled_follows_the_switch_and_the_device(monkeypatch, use, device_type, want):
    from genba.kernels import triton_tma

    monkeypatch.setattr(triton_tma, "USE", use)
    assert triton_tma.enabled(torch.device(device_type)) is want


def test_a_gpu_before_sm90_refuses_them_in_one_line(monkeypatch):
    from genba.errors import GenbaError
    from genba.kernels import triton_tma

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(triton_tma, "USE", None)
    assert triton_tma.enabled(torch.device("cuda")) is False  # by default: the pointer kernels there
    monkeypatch.setattr(triton_tma, "USE", True)
    with pytest.raises(GenbaError, match=r"need compute capability >= 9.0, this GPU has 8.0; unset \$GENBA_TRITON"):
        triton_tma.enabled(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(triton_tma, "USE", None)
    assert triton_tma.enabled(torch.device("cuda")) is True


@pytest.mark.parametrize(("value", "want"), [("pointer", "False"), ("tma", "True"), ("auto", "None")])
def test_the_environment_variable_chooses_the_family(value, want):
    code = "from genba.kernels import triton_tma; print(triton_tma.USE)"
    env = os.environ | {"GENBA_TRITON_KERNELS": value}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == want


def test_a_bad_family_is_one_line():
    from genba.errors import GenbaError
    from genba.kernels import triton_tma

    with pytest.raises(
        GenbaError, match=r"Triton kernels 'fast' is not one of auto, tma, pointer \(\$GENBA_TRITON_KERNELS\)"
    ):
        triton_tma.family("fast")


def test_st_attention_takes_them_when_switched_on(monkeypatch):
    """Through the custom op and autograd, as a model calls it (the switch is what sm_90 turns on by itself)."""
    from genba.kernels import triton_tma

    monkeypatch.setattr(triton_tma, "USE", True)
    calls = []
    real = triton_tma.forward
    monkeypatch.setattr(triton_tma, "forward", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    n, window = 9, 2
    q, k, v, do = (torch.randn(1, 2, 4 * n, 32) for _ in range(4))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = st_attention(*leaves, tokens_per_frame=n, frame_window=window, backend="triton")
    out.backward(do)
    assert calls, "st_attention did not run the descriptor kernels"
    _check((out.detach(), *(t.grad for t in leaves)), _reference(q, k, v, do, n, window, True), "through the op")


def test_candidates_cover_each_kernel_and_fit_its_signature():
    from genba.kernels import triton_tma

    for name, kernel in triton_tma.KERNELS.items():
        configs = triton_tma.CANDIDATES[name]
        assert configs and len({len(c) for c in configs}) == 1
        assert len(configs[0]) == (5 if "SPLIT" in kernel.arg_names else 4), name
        assert len(set(configs)) == len(configs), f"{name}: a candidate is listed twice"
        descriptors = [a for a in kernel.arg_names if a.startswith("desc_")]
        assert set(descriptors) <= set(triton_tma._ROWS), f"{name}: a descriptor without a tile rule"


def test_descriptor_views_batch_and_heads_as_one_dimension():
    from genba.kernels import triton_tma

    x = torch.randn(2, 3, 40, 32)
    desc = triton_tma.descriptor(x, 16)
    assert list(desc.shape) == [6, 40, 32] and list(desc.strides) == [40 * 32, 32, 1]
    assert desc.block_shape == [1, 16, 32]
