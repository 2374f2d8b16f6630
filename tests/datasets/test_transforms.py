"""Image augmentations: deterministic under a seed, one draw for the whole clip, uint8 in and out, from config."""

from __future__ import annotations

import pytest
import torch

from genba.datasets.transforms import ColorJitter, Compose, RandomCrop, RandomShift, make_transforms
from genba.errors import GenbaError


def clip(t: int = 4, h: int = 24, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ALL = [RandomShift(4), RandomCrop(0.7), ColorJitter(0.3, 0.3, 0.3), make_transforms(["shift:2", "crop:0.8", "jitter"])]


@pytest.mark.parametrize("t", ALL, ids=["shift", "crop", "jitter", "compose"])
def test_seeded_and_shape_preserving(t):
    x = clip()
    a, b, c = t(x, gen(1)), t(x, gen(1)), t(x, gen(2))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("t", ALL, ids=["shift", "crop", "jitter", "compose"])
def test_one_draw_for_every_frame_of_the_clip(t):
    x = clip(t=1).expand(5, -1, -1, -1).contiguous()  # five identical frames
    y = t(x, gen(3))
    assert all(torch.equal(y[0], y[k]) for k in range(5))


def test_shift_moves_content_by_whole_pixels():
    x = clip(t=1)
    y = RandomShift(3)(x, gen(0))
    # some integer offset (dy, dx) in [-3, 3]^2 maps the interior of x onto y exactly
    hits = [
        (dy, dx)
        for dy in range(-3, 4)
        for dx in range(-3, 4)
        if torch.equal(y[..., 3:-3, 3:-3], x[..., 3 + dy : x.shape[-2] - 3 + dy, 3 + dx : x.shape[-1] - 3 + dx])
    ]
    assert len(hits) == 1


def test_zero_strength_is_identity_and_parsing():
    x = clip()
    assert torch.equal(RandomShift(0)(x, gen(0)), x)
    assert torch.equal(ColorJitter(0, 0, 0)(x, gen(0)), x)
    assert torch.equal(RandomCrop(1.0)(x, gen(0)), x)
    assert make_transforms([]) is None  # evaluation: no augmentation at all
    c = make_transforms(["shift:6", "jitter:0.1", "crop"])
    assert (
        isinstance(c, Compose) and c.transforms[0] == RandomShift(6) and c.transforms[1] == ColorJitter(0.1, 0.1, 0.1)
    )
    with pytest.raises(GenbaError, match=r"unknown augmentation 'blur'.*valid: shift, crop, jitter"):
        make_transforms(["blur:3"])
    with pytest.raises(GenbaError, match="not a int"):
        make_transforms(["shift:big"])
    with pytest.raises(GenbaError, match="crop scale"):
        RandomCrop(1.5)
