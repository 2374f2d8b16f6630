"""The compiled Triton kernel on CUDA: bf16/fp16 accuracy by FlashAttention's rule, opcheck, torch.compile.

Rule: the error of the kernel against the fp32 reference is at most 2x the error of the same computation done by
PyTorch in the same low precision (plus a tiny floor for outputs that are exact in both).
"""

import os

import pytest
import torch

from genba.kernels import reference_attention, st_attention

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (the CPU runs the interpreter tests)"
    ),
    pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") == "1", reason="TRITON_INTERPRET=1 would time/compile nothing on the GPU"
    ),
]


def _lowp_reference(q, k, v, n, window, causal):
    """The same masked softmax done in q's dtype throughout: what PyTorch alone achieves in that precision."""
    from genba.kernels import frame_mask

    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~frame_mask(q.shape[2], n, window, causal, q.device), float("-inf"))
    return scores.softmax(-1) @ v


def _grads(fn, q, k, v, do):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return [out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float()]


CASES = [
    # (B, H, F, N, D, window, causal)
    (2, 4, 16, 64, 128, None, True),
    (2, 4, 16, 64, 128, 4, True),
    (1, 8, 8, 256, 64, None, True),
    (2, 2, 17, 65, 64, 4, False),
    (2, 2, 3, 7, 32, 1, True),
    (1, 2, 1, 130, 128, None, True),
    (3, 2, 17, 1, 64, None, False),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(("b", "h", "f", "n", "d", "window", "causal"), CASES)
def test_low_precision_within_twice_pytorch_error(b, h, f, n, d, window, causal, dtype):
    torch.manual_seed(0)
    q, k, v, do = (torch.randn(b, h, f * n, d, device="cuda", dtype=dtype) for _ in range(4))
    kw = dict(tokens_per_frame=n, frame_window=window, causal=causal)
    exact = _grads(lambda q, k, v: reference_attention(q.float(), k.float(), v.float(), **kw), q, k, v, do.float())
    ours = _grads(lambda q, k, v: st_attention(q, k, v, backend="triton", **kw), q, k, v, do)
    torch_lowp = _grads(lambda q, k, v: _lowp_reference(q, k, v, n, window, causal), q, k, v, do)
    for name, o, t, e in zip(("out", "dq", "dk", "dv"), ours, torch_lowp, exact, strict=True):
        ours_err, torch_err = (o - e).abs().max().item(), (t - e).abs().max().item()
        assert ours_err <= 2 * torch_err + 1e-5, f"{name}: kernel {ours_err:.3e} > 2 x PyTorch {torch_err:.3e}"


@pytest.mark.parametrize(("b", "h", "f", "n", "d", "window", "causal"), [CASES[1], CASES[3], CASES[5]])
def test_pointer_kernels_within_twice_pytorch_error(monkeypatch, b, h, f, n, d, window, causal):
    """The pointer kernels, which GPUs before sm_90 run (on sm_90 the descriptor kernels are the default)."""
    from genba.kernels import triton_tma

    monkeypatch.setattr(triton_tma, "USE", False)
    test_low_precision_within_twice_pytorch_error(b, h, f, n, d, window, causal, torch.bfloat16)


def test_descriptor_kernels_are_the_default_from_sm90():
    from genba.kernels import triton_tma

    assert triton_tma.enabled(torch.device("cuda")) is (torch.cuda.get_device_capability()[0] >= 9)


def test_fp32_is_exact_on_gpu():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5 * 33, 64, device="cuda") for _ in range(3))
    kw = dict(tokens_per_frame=33, frame_window=2)
    torch.testing.assert_close(
        st_attention(q, k, v, backend="triton", **kw), reference_attention(q, k, v, **kw), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_opcheck(dtype):
    q, k, v = (torch.randn(1, 2, 3 * 40, 64, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    torch.library.opcheck(torch.ops.genba.st_attention.default, (q, k, v, 40, 2, True, 0.125))


def test_auto_is_triton_and_inductor_compiles_around_it():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 8 * 64, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))

    def f(q, k, v):
        return st_attention(q * 2, k, v, tokens_per_frame=64, frame_window=4).relu()

    compiled = torch.compile(f, fullgraph=True)
    want = st_attention(q * 2, k, v, tokens_per_frame=64, frame_window=4, backend="triton").relu()
    torch.testing.assert_close(compiled(q, k, v), want, atol=0, rtol=0)


def test_decode_on_gpu_matches_full():
    from genba.kernels import FrameKVCache

    torch.manual_seed(0)
    n, frames = 64, 6
    q, k, v = (torch.randn(1, 4, frames * n, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    full = st_attention(q, k, v, tokens_per_frame=n, frame_window=3, backend="triton")
    cache = FrameKVCache(n, 3)
    for fr in range(frames):
        rows = slice(fr * n, (fr + 1) * n)
        out = cache.step(q[:, :, rows], k[:, :, rows], v[:, :, rows])
        torch.testing.assert_close(out, full[:, :, rows], atol=2e-2, rtol=0)


def test_bench_runs_on_gpu(tmp_path):
    from genba.kernels.bench import BenchAttentionConfig, run_bench_attention

    cfg = BenchAttentionConfig(frames=[4], tokens=[64], dims=[64], windows=[0], warmup=1, reps=2, out=str(tmp_path))
    summary = run_bench_attention(cfg)
    rows = summary["rows"]
    assert summary["triton_kernels"] == ("tma" if torch.cuda.get_device_capability()[0] >= 9 else "pointer")
    assert {r["backend"] for r in rows} == {"triton", "flex", "sdpa", "flash"}
    assert all(r["tflops_fwd"] > 0 and "ms_fwd_bwd" in r for r in rows)
    assert all(r["max_err_vs_reference"] < 5e-2 for r in rows if r["backend"] != "flash")  # bf16 sanity
