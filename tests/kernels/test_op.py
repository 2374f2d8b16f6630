"""The custom op: torch.library's own checks, fake tensors, and torch.compile tracing a model that calls it (CPU)."""

import pytest
import torch

from genba.kernels import frame_mask, reference_attention, st_attention

pytestmark = [
    pytest.mark.usefixtures("interpreted"),
    # the interpreter turns our tensor loop bounds into 1-element arrays; numpy warns, harmlessly
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
]


def _args(requires_grad=True):
    q, k, v = (torch.randn(1, 2, 14, 32, requires_grad=requires_grad) for _ in range(3))
    return q, k, v, 7, 2, True, 32**-0.5


def test_opcheck():
    """Schema, fake implementation, autograd registration and AOT dispatch, as torch.library checks them."""
    torch.library.opcheck(torch.ops.genba.st_attention.default, _args())


def test_fake_tensors_give_shapes_without_running_the_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(3, 4, 5 * 9, 64)
        out, lse = torch.ops.genba.st_attention(q, q, q, 9, 0, False, 0.125)
    assert out.shape == (3, 4, 45, 64) and lse.shape == (3, 4, 45) and lse.dtype == torch.float32


def test_torch_compile_traces_a_model_using_the_kernel():
    """fullgraph=True: the op is one node in forward and backward graphs, no graph break in st_attention."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(64, 3 * 64)

        def forward(self, x, backend):  # x (B, L, 64) -> (B, L, 64), 2 heads of 32
            b, length, _ = x.shape
            q, k, v = self.qkv(x).view(b, length, 3, 2, 32).permute(2, 0, 3, 1, 4)
            out = st_attention(q, k, v, tokens_per_frame=5, frame_window=2, backend=backend)
            return out.transpose(1, 2).reshape(b, length, 64)

    model = Block()
    x = torch.randn(2, 15, 64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x, "triton")
    out.square().sum().backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(x, "reference")
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    for g, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-4, rtol=0)


def test_reference_is_what_the_op_computes():
    q, k, v, n, w, causal, scale = _args(requires_grad=False)
    out, lse = torch.ops.genba.st_attention(q, k, v, n, w, causal, scale)
    ref = reference_attention(q, k, v, tokens_per_frame=n, frame_window=w)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    # lse (log2 units of the scaled scores) is what the backward recomputes probabilities from
    scores = (q @ k.transpose(-2, -1)) * scale
    mask = frame_mask(14, n, w, causal)
    want = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), -1) / torch.log(torch.tensor(2.0))
    torch.testing.assert_close(lse, want, atol=2e-5, rtol=0)


def test_flop_counter_counts_the_useful_pairs_forward_and_backward():
    """FlopCounterMode (what MFU figures use) sees the op: 4 * pairs * D per head forward, 2.5x that backward."""
    from torch.utils.flop_counter import FlopCounterMode

    b, h, frames, n, d, window = 2, 3, 5, 8, 32, 2
    q, k, v = (torch.randn(b, h, frames * n, d, requires_grad=True) for _ in range(3))
    pairs = (frames + (frames - 1)) * n * n  # causal, window 2: each frame sees itself and the one before
    with FlopCounterMode(display=False) as counter:
        out = st_attention(q, k, v, tokens_per_frame=n, frame_window=window, backend="triton")
        forward = counter.get_total_flops()
        out.sum().backward()
    assert forward == 4 * pairs * b * h * d
    assert counter.get_total_flops() == forward * 7 // 2
