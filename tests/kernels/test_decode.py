"""Rollout decoding with a KV cache equals the newest frame's rows of the full st_attention."""

import pytest
import torch

from genba.errors import GenbaError
from genba.kernels import FrameKVCache, st_attention, st_attention_decode


@pytest.mark.parametrize("window", [None, 1, 3])
@pytest.mark.parametrize("n", [1, 7])
def test_cache_rollout_matches_full_attention(n, window):
    frames = 6
    q, k, v = (torch.randn(2, 3, frames * n, 64) for _ in range(3))
    full = st_attention(q, k, v, tokens_per_frame=n, frame_window=window, backend="reference")
    cache = FrameKVCache(n, window)
    for f in range(frames):
        rows = slice(f * n, (f + 1) * n)
        out = cache.step(q[:, :, rows], k[:, :, rows], v[:, :, rows])
        torch.testing.assert_close(out, full[:, :, rows], atol=1e-5, rtol=0)
        assert cache.frames == (f + 1 if window is None else min(f + 1, window))  # memory stays bounded
    assert cache.frames_seen == frames


def test_decode_against_an_explicit_cache_with_scale():
    n, frames = 4, 5
    q, k, v = (torch.randn(1, 2, frames * n, 32) for _ in range(3))
    full = st_attention(q, k, v, tokens_per_frame=n, frame_window=2, scale=0.5, backend="sdpa")
    last = st_attention_decode(q[:, :, -n:], k, v, tokens_per_frame=n, frame_window=2, scale=0.5)
    torch.testing.assert_close(last, full[:, :, -n:], atol=1e-5, rtol=0)


def test_decode_errors():
    q = torch.randn(1, 2, 4, 32)
    with pytest.raises(GenbaError, match="one frame"):
        st_attention_decode(torch.randn(1, 2, 8, 32), q, q, tokens_per_frame=4)
    with pytest.raises(GenbaError, match="cache length 6 is not a positive multiple of tokens_per_frame=4"):
        c = torch.randn(1, 2, 6, 32)
        st_attention_decode(q, c, c, tokens_per_frame=4)
    with pytest.raises(GenbaError, match="append takes one frame"):
        FrameKVCache(4).append(torch.randn(1, 2, 3, 32), torch.randn(1, 2, 3, 32))
