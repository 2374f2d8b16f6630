"""The metrics of `genba eval-worldmodel` against direct computations: PSNR and its cap, SSIM written out, the
baselines, the language of an instruction and retrieval R@1 per language."""

import numpy as np
import pytest
import torch

from genba.worldmodel.metrics import const_velocity, copy_last, language, psnr, retrieval_r1, ssim

# ---- metrics -----------------------------------------------------------------------------------------------------


def test_psnr_of_known_mse_and_the_cap() -> None:
    real = torch.zeros(2, 3, 8, 8)
    assert psnr(real + 0.1, real).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)  # MSE 0.01 -> 20 dB
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 5, 6, generator=g), torch.rand(4, 3, 5, 6, generator=g)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(a, b), 10 * torch.log10(1 / mse))
    assert psnr(a, a).tolist() == pytest.approx([100.0] * 4)  # identical frames: capped, never inf
    assert psnr(a[None], b[None]).shape == (1, 4)  # leading dims kept


def ssim_numpy(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """The SSIM formula written out, position by position, on (C, H, W) float64 images in [0, 1]."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for ch in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                px, py = x[ch, i : i + size, j : j + size], y[ch, i : i + size, j : j + size]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cov = (w * (px - mx) * (py - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_formula_and_is_one_only_for_identical_images() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 16, 18))
    noisy = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    shifted = np.roll(x, 2, axis=2)
    for y in (noisy, shifted):
        got = ssim(torch.from_numpy(x)[None], torch.from_numpy(y)[None])
        assert got.shape == (1,)
        assert got.item() == pytest.approx(ssim_numpy(x, y), abs=1e-9)
        assert got.item() < 0.99
    same = torch.from_numpy(x).float()[None].repeat(2, 1, 1, 1)
    assert ssim(same, same).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    # float32 on uint8-like frames (what the evaluator feeds it) agrees with the float64 formula too
    u = torch.from_numpy((x * 255).round() / 255)
    v = torch.from_numpy((noisy * 255).round() / 255)
    assert ssim(u.float()[None], v.float()[None]).item() == pytest.approx(ssim_numpy(u.numpy(), v.numpy()), abs=1e-5)


def test_ssim_on_images_smaller_than_the_window_uses_the_largest_odd_window() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(size=(3, 8, 9)), rng.uniform(size=(3, 8, 9))
    got = ssim(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).item()
    assert got == pytest.approx(ssim_numpy(x, y, size=7), abs=1e-9)


def test_baselines_copy_last_and_const_velocity() -> None:
    t = torch.arange(10, dtype=torch.float64)
    a, b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([0.1, 0.3, -0.7], dtype=torch.float64)
    state = (a + t[:, None] * b)[None].repeat(2, 1, 1)  # (2, 10, 3) linear in time
    torch.testing.assert_close(const_velocity(state[:, :3], 7), state[:, 3:])  # exact on a linear trajectory
    torch.testing.assert_close(copy_last(state[:, :3], 7), state[:, 2:3].expand(2, 7, 3))
    torch.testing.assert_close(const_velocity(state[:, :1], 4), copy_last(state[:, :1], 4))  # one frame: no velocity
    frames = torch.randint(0, 255, (2, 3, 3, 4, 4), dtype=torch.uint8)
    assert copy_last(frames, 5).shape == (2, 5, 3, 4, 4) and bool((copy_last(frames, 5) == frames[:, -1:]).all())


# ---- language and retrieval ----------------------------------------------------------------------------------------


def test_language_detects_japanese_by_kana_or_kanji() -> None:
    for text in ("赤いキューブを青い箱に入れて", "ひらがな", "カタカナ", "漢字", "ｶﾀｶﾅ", "pick the 赤 cube"):
        assert language(text) == "ja", text
    for text in ("pick up the red cube", "café déjà vu", "", "put it in bin #3!"):
        assert language(text) == "en", text


def test_retrieval_r1_per_language_on_hand_made_embeddings() -> None:
    texts = ["red", "blue", "green", "red", "赤", "青"]
    # text embeddings: one axis per distinct instruction; the two "red" episodes share theirs
    axis = {"red": 0, "blue": 1, "green": 2, "赤": 3, "青": 4}
    text_emb = torch.eye(5)[[axis[t] for t in texts]]
    image_emb = torch.eye(5)[[0, 2, 2, 0, 4, 4]]  # red ok, blue->green miss, green ok, red ok; 赤->青 miss, 青 ok
    r = retrieval_r1(image_emb, text_emb, texts)
    assert r["en"] == pytest.approx(3 / 4) and r["n_en"] == 4 and r["chance_en"] == pytest.approx(1 / 3)
    assert r["ja"] == pytest.approx(1 / 2) and r["n_ja"] == 2 and r["chance_ja"] == pytest.approx(1 / 2)
    only_en = retrieval_r1(image_emb[:4], text_emb[:4], texts[:4])
    assert only_en["ja"] is None and only_en["chance_ja"] is None and only_en["n_ja"] == 0
    assert only_en["en"] == pytest.approx(3 / 4)


def test_retrieval_interval_resamples_whole_episodes() -> None:
    texts = ["red"] * 6 + ["blue"] * 6 + ["赤"] * 2
    text_emb = torch.eye(3)[[0] * 6 + [1] * 6 + [2] * 2]
    # episodes 0-1 red (all hits), 2 blue (all hits), 3 blue (all misses: it looks red); 4 Japanese
    image_emb = torch.eye(3)[[0] * 6 + [1] * 3 + [0] * 3 + [2] * 2]
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    r = retrieval_r1(image_emb, text_emb, texts, groups)
    assert r["en"] == pytest.approx(9 / 12) and r["episodes_en"] == 4 and r["n_en"] == 12
    low, high = r["ci95_en"]
    assert 0.25 <= low < 9 / 12 < high <= 1.0  # one episode of four all wrong: the interval is wide
    assert r["ci95_ja"] == [1.0, 1.0] and r["episodes_ja"] == 1  # one episode: nothing to resample
    assert retrieval_r1(image_emb, text_emb, texts, groups)["ci95_en"] == r["ci95_en"]  # seeded
    frames = retrieval_r1(image_emb[:12], text_emb[:12], texts[:12], list(range(12)))  # as if frames were episodes
    assert frames["ci95_en"][1] - frames["ci95_en"][0] < high - low  # independent queries: a narrower interval
    assert "ci95_en" not in retrieval_r1(image_emb, text_emb, texts)  # no groups: no interval
