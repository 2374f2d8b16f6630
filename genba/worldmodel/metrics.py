"""The metrics of `genba eval-worldmodel` (genba.worldmodel.evaluate): PSNR (capped), SSIM, joint-state error, the
copy-last and constant-velocity baselines, and image-to-instruction retrieval per language. Frames are float in
[0, 1], (..., 3, H, W); every function is batched over the leading dimensions."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

PSNR_CAP_MSE = 1e-10  # MSE floor: identical frames give 100 dB instead of +inf, so one perfect frame cannot make
#                       a mean infinite (or a controllability difference undefined)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
_JAPANESE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")  # kana, CJK, half-width kana


def to_unit(frames: Tensor) -> Tensor:
    """uint8 frames (..., 3, H, W) -> float32 in [0, 1]."""
    return frames.float() / 255.0


def mse(pred: Tensor, real: Tensor) -> Tensor:
    """Mean squared error of images (..., 3, H, W) in [0, 1] -> (...)."""
    return (pred - real).pow(2).flatten(-3).mean(-1)


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error (of frames in [0, 1]), capped like `psnr`."""
    return float(10.0 * math.log10(1.0 / max(mse, PSNR_CAP_MSE)))


def psnr(pred: Tensor, real: Tensor) -> Tensor:
    """PSNR in dB of images (..., 3, H, W) in [0, 1] -> (...); capped at 100 dB (see PSNR_CAP_MSE)."""
    import torch

    mse = (pred - real).pow(2).flatten(-3).mean(-1)  # (...)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_CAP_MSE))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """(size, size) float64 Gaussian weights summing to 1."""
    import torch

    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return torch.outer(g, g) / g.sum() ** 2


def ssim(pred: Tensor, real: Tensor, size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """SSIM (Wang et al. 2004) of images (..., C, H, W) in [0, 1] -> (...): per channel over the valid positions of
    the Gaussian window, averaged. Images smaller than the window use the largest odd window that fits."""
    import torch.nn.functional as F

    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    x, y = pred.reshape(-1, c, h, w), real.reshape(-1, c, h, w)  # (N, C, H, W)
    size = min(size, h, w)
    size -= 1 - size % 2  # odd
    kernel = gaussian_window(size, sigma).to(x).expand(c, 1, size, size)  # (C, 1, k, k): one filter per channel

    def blur(t: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H-k+1, W-k+1), local weighted mean
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).reshape(lead)


def state_mae(pred: Tensor, real: Tensor) -> Tensor:
    """Mean absolute error over joints: (..., S) -> (...)."""
    return (pred - real).abs().mean(-1)


def copy_last(context: Tensor, k: int) -> Tensor:
    """The last context step held for k steps: (B, C, ...) -> (B, k, ...)."""
    return context[:, -1:].expand(-1, k, *context.shape[2:])


def const_velocity(state: Tensor, k: int) -> Tensor:
    """Linear extrapolation of the last two context states: (B, C, S) -> (B, k, S); zero velocity when C == 1."""
    import torch

    last = state[:, -1]  # (B, S)
    velocity = last - state[:, -2] if state.shape[1] >= 2 else torch.zeros_like(last)
    steps = torch.arange(1, k + 1, dtype=state.dtype, device=state.device)  # (k,)
    return last[:, None] + steps[None, :, None] * velocity[:, None]


def language(text: str) -> str:
    """'ja' when the text has any kana or CJK ideograph, else 'en'."""
    return "ja" if _JAPANESE.search(text) else "en"


def retrieval_r1(
    image_emb: Tensor, text_emb: Tensor, texts: list[str], groups: list[int] | None = None, *, resamples: int = 2000
) -> dict[str, Any]:
    """Image-to-instruction R@1 per language. image_emb, text_emb (N, E): query i's image and its instruction texts[i].

    Candidates are the distinct instructions of the query's language (queries sharing an instruction are one
    candidate, so a tie between identical texts is not a miss); a hit is the argmax being the query's own text.
    With `groups` (the episode of each query), `ci95_<lang>` is a 95% percentile interval from resampling whole
    episodes (frames of one episode are not independent), seeded, and `episodes_<lang>` counts them."""
    import numpy as np

    out: dict[str, Any] = {}
    for lang in ("en", "ja"):
        rows = [i for i, t in enumerate(texts) if language(t) == lang]
        first: dict[str, int] = {}  # distinct text -> its first row, in order
        for i in rows:
            first.setdefault(texts[i], i)
        out[lang], out[f"chance_{lang}"], out[f"n_{lang}"] = None, None, len(rows)
        if groups is not None:
            out[f"ci95_{lang}"], out[f"episodes_{lang}"] = None, len({groups[i] for i in rows})
        if not rows:
            continue
        candidates = list(first)
        best = (image_emb[rows] @ text_emb[list(first.values())].T).argmax(1).tolist()  # (n,) over candidates
        hits = np.array([candidates[b] == texts[i] for b, i in zip(best, rows, strict=True)], dtype=np.float64)
        out[lang] = float(hits.mean())
        out[f"chance_{lang}"] = 1.0 / len(candidates)
        if groups is not None:
            episodes = sorted({groups[i] for i in rows})
            index = {g: j for j, g in enumerate(episodes)}
            of = np.array([index[groups[i]] for i in rows])
            per_hits, per_n = np.bincount(of, hits, len(episodes)), np.bincount(of, minlength=len(episodes))
            draw = np.random.default_rng(0).integers(0, len(episodes), (resamples, len(episodes)))  # (R, episodes)
            r1 = per_hits[draw].sum(1) / per_n[draw].sum(1)  # (R,)
            out[f"ci95_{lang}"] = [float(np.quantile(r1, 0.025)), float(np.quantile(r1, 0.975))]
    return out
