"""Image augmentations as small composable callables on uint8 clips.

Each transform is `t(frames (T, 3, H, W) uint8 tensor, generator) -> (T, 3, H, W) uint8`: one random draw per
call, applied to every frame of the clip (a crop that jumps between frames would teach the world model motion that
is not there). All randomness comes from the generator, so a seed fixes the output (ClipDataset seeds one per
sample from (seed, epoch, index, camera)). Evaluation builds no transform: `make_transforms([])` is None.

From a config (list[str]): "shift:4" (pad 4 px by edge replication, random crop back: DrQ's shift),
"crop:0.8" (random crop of 80-100% of the side, resized back), "jitter:0.2" (brightness, contrast, saturation
each by a factor in [0.8, 1.2]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genba.errors import GenbaError


def _uniform(g: Any, lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: Any, hi: int) -> int:
    """Uniform in [0, hi]."""
    import torch

    return int(torch.randint(0, hi + 1, (), generator=g))


@dataclass
class RandomShift:
    pad: int = 4

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise GenbaError(f"shift pad {self.pad} must be >= 0")

    def __call__(self, frames: Any, g: Any) -> Any:
        import torch.nn.functional as F

        _, _, h, w = frames.shape
        padded = F.pad(frames.float(), (self.pad,) * 4, mode="replicate")
        y, x = _randint(g, 2 * self.pad), _randint(g, 2 * self.pad)
        return padded[:, :, y : y + h, x : x + w].to(frames.dtype)


@dataclass
class RandomCrop:
    min_scale: float = 0.8  # side of the crop, as a fraction of the image side

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1:
            raise GenbaError(f"crop scale {self.min_scale} must be in (0, 1]")

    def __call__(self, frames: Any, g: Any) -> Any:
        import torch.nn.functional as F

        _, _, h, w = frames.shape
        scale = _uniform(g, self.min_scale, 1.0)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        y, x = _randint(g, h - ch), _randint(g, w - cw)
        crop = frames[:, :, y : y + ch, x : x + cw]
        if (ch, cw) == (h, w):
            return crop
        out = F.interpolate(crop.float(), size=(h, w), mode="bilinear", antialias=True)
        return out.round_().clamp_(0, 255).to(frames.dtype)


@dataclass
class ColorJitter:
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        if not all(0 <= v < 1 for v in (self.brightness, self.contrast, self.saturation)):
            raise GenbaError(f"jitter strengths {self.brightness, self.contrast, self.saturation} must be in [0, 1)")

    def __call__(self, frames: Any, g: Any) -> Any:
        x = frames.float()
        b = _uniform(g, 1 - self.brightness, 1 + self.brightness)
        c = _uniform(g, 1 - self.contrast, 1 + self.contrast)
        s = _uniform(g, 1 - self.saturation, 1 + self.saturation)
        x = x * b
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # (T, 1, H, W) luma
        x = (x - gray.mean(dim=(1, 2, 3), keepdim=True)) * c + gray.mean(dim=(1, 2, 3), keepdim=True)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        x = (x - gray) * s + gray
        return x.round_().clamp_(0, 255).to(frames.dtype)


@dataclass
class Compose:
    transforms: list

    def __call__(self, frames: Any, g: Any) -> Any:
        for t in self.transforms:
            frames = t(frames, g)
        return frames


TRANSFORMS = {"shift": (RandomShift, int), "crop": (RandomCrop, float), "jitter": (ColorJitter, float)}


def make_transforms(specs: list[str]) -> Compose | None:
    """["shift:4", "jitter:0.2"] -> Compose; [] -> None (no augmentation: evaluation)."""
    out = []
    for spec in specs:
        name, _, arg = spec.partition(":")
        if name not in TRANSFORMS:
            raise GenbaError(f"unknown augmentation {name!r} in {spec!r} (valid: {', '.join(TRANSFORMS)})")
        cls, kind = TRANSFORMS[name]
        try:
            value = kind(arg) if arg else None
        except ValueError:
            raise GenbaError(f"augmentation {spec!r}: {arg!r} is not a {kind.__name__}") from None
        if name == "jitter" and value is not None:
            out.append(cls(value, value, value))
        else:
            out.append(cls() if value is None else cls(value))
    return Compose(out) if out else None
