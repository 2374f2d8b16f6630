"""Normalization statistics (from meta/stats.json and recomputed) and the Normalizer: save/load round trip, the same
result for torch and numpy inputs, exact inverses, and the statistics' meaning (quantile mode maps q01/q99 to -1/+1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from foreign_dataset import STATE, make_lerobot_dataset

from genba.datasets.clips import ClipConfig, ClipDataset
from genba.datasets.stats import (
    STATS_FILE,
    Normalizer,
    compute_stats,
    image_stats,
    load_stats,
    numeric_stats,
    save_stats,
    stats_from_meta,
)
from genba.errors import GenbaError


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> ClipDataset:
    root = make_lerobot_dataset(tmp_path_factory.mktemp("stats") / "ds")
    cfg = ClipConfig(
        data=str(root), cameras=["cam_high"], rename=["cam_high:front"], future_frames=2,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )  # fmt: skip
    return ClipDataset(cfg, progress=False)


def test_numeric_and_image_stats():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 3))
    s = numeric_stats(x)
    np.testing.assert_allclose(s["mean"], x.mean(0))
    np.testing.assert_allclose(s["std"], x.std(0))
    np.testing.assert_allclose(s["q99"], np.quantile(x, 0.99, axis=0))
    assert s["count"].tolist() == [1000] and (s["min"] <= s["q01"]).all() and (s["q99"] <= s["max"]).all()
    frames = np.zeros((2, 3, 4, 4), np.uint8)
    frames[:, 1] = 255
    im = image_stats(frames)
    assert im["mean"].shape == (3, 1, 1) and im["mean"].ravel().tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("n", [1, 2, 7])
def test_image_stats_from_histograms_equal_stats_of_the_pixels(n):
    # Image statistics come from 256-bin counts (bounded memory); they must be the pixels' own statistics,
    # quantiles included (numpy's linear rule), computed here the direct way.
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 256, (n, 3, 5, 6), dtype=np.uint8)
    frames[:, 2] //= 4  # channels with other distributions
    frames[:, 1] = np.clip(frames[:, 1], 100, 140)
    direct = numeric_stats(frames.transpose(1, 0, 2, 3).reshape(3, -1).T / 255.0)
    got = image_stats(frames)
    assert got["count"].tolist() == [n * 5 * 6]
    for name in ("mean", "std", "min", "max", "q01", "q10", "q50", "q90", "q99"):
        assert got[name].shape == (3, 1, 1)
        np.testing.assert_allclose(got[name].ravel(), direct[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_image_stats_memory_does_not_scale_with_float_pixels():
    import tracemalloc

    frames = np.random.default_rng(0).integers(0, 256, (200, 3, 64, 64), dtype=np.uint8)
    tracemalloc.start()
    try:
        image_stats(frames)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * frames.nbytes  # float64 pixels alone would be 8x, their quantiles' copies more


def test_recomputed_stats_agree_with_lerobots_meta_stats(ds):
    meta, mine = stats_from_meta(ds), compute_stats(ds)
    assert set(meta) == set(mine) == {STATE, "action", "observation.images.front"}
    for key in (STATE, "action"):  # every frame counts: mean/std/min/max are exact
        for name in ("mean", "std", "min", "max"):
            np.testing.assert_allclose(mine[key][name], meta[key][name], rtol=1e-5, atol=1e-5, err_msg=f"{key} {name}")
    # images: lerobot subsamples frames and pixels for its image statistics; decoded pixels are the same video
    np.testing.assert_allclose(
        mine["observation.images.front"]["mean"], meta["observation.images.front"]["mean"], atol=0.03
    )
    train = compute_stats(ds, episodes=[0, 2], images=False)  # stats of a split see only its episodes
    assert train[STATE]["max"][0] == 2019.0 and train[STATE]["min"][0] == 0.0 and train[STATE]["count"] == [32]
    with pytest.raises(GenbaError, match="no episodes"):
        compute_stats(ds, episodes=[])


def test_normalizer_round_trip_and_save_load(ds, tmp_path):
    norm = Normalizer(compute_stats(ds))
    batch = {k: v.unsqueeze(0) if hasattr(v, "unsqueeze") else v for k, v in ds[7].items()}
    out = norm.normalize(batch)
    assert out["observation.images.front"].dtype == torch.float32 and out["task"] == batch["task"]
    assert torch.equal(out["action_is_pad"], batch["action_is_pad"])  # keys without stats pass through
    back = norm.unnormalize(out)
    for key in (STATE, "action", "future.state"):
        torch.testing.assert_close(back[key], batch[key], rtol=0, atol=1e-3)
    torch.testing.assert_close(back["observation.images.front"] * 255, batch["observation.images.front"].float())
    # future.state uses observation.state's statistics
    torch.testing.assert_close(norm.normalize({STATE: batch["future.state"]})[STATE], out["future.state"])

    norm.save(tmp_path / "ckpt" / STATS_FILE)
    loaded = Normalizer.load(tmp_path / "ckpt" / STATS_FILE)
    again = loaded.normalize(batch)
    for key in out:
        if isinstance(out[key], torch.Tensor):
            assert torch.equal(again[key], out[key]), key
    # numpy in, the same numbers out (serving receives numpy)
    as_np = loaded.normalize({"action": batch["action"].numpy()})["action"]
    assert isinstance(as_np, np.ndarray) and np.allclose(as_np, out["action"].numpy(), atol=1e-6)


def test_modes_mean_what_they_say():
    stats = {"a": {"mean": [1.0], "std": [2.0], "min": [-1.0], "max": [3.0], "q01": [0.0], "q99": [4.0]}}
    x = torch.tensor([[0.0], [4.0], [1.0]])
    assert Normalizer(stats, {"a": "quantile"}).normalize({"a": x})["a"].ravel().tolist() == [-1.0, 1.0, -0.5]
    assert Normalizer(stats, {"a": "min_max"}).normalize({"a": x})["a"].ravel().tolist() == [-0.5, 1.5, 0.0]
    assert Normalizer(stats, {"a": "mean_std"}).normalize({"a": x})["a"].ravel().tolist() == [-0.5, 1.5, 0.0]
    assert torch.equal(Normalizer(stats, {"a": "identity"}).normalize({"a": x})["a"], x)
    constant = {"c": {"q01": [2.0], "q99": [2.0]}}  # a joint that never moves: no division by zero
    assert torch.isfinite(Normalizer(constant).normalize({"c": torch.tensor([2.0, 3.0])})["c"]).all()
    with pytest.raises(GenbaError, match=r"mode 'zscore'.*valid"):
        Normalizer(stats, {"a": "zscore"})
    with pytest.raises(GenbaError, match="lack 'q01'"):
        Normalizer({"b": {"mean": [0.0], "std": [1.0]}}, {"b": "quantile"})


def test_stats_files_round_trip_and_errors(tmp_path):
    stats = {"x": {"mean": [0.5, 1.5], "std": [1.0, 2.0]}}
    save_stats(tmp_path / "s.json", stats)
    assert load_stats(tmp_path / "s.json") == stats
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(GenbaError, match="not a statistics file"):
        load_stats(tmp_path / "bad.json")
    with pytest.raises(GenbaError, match="cannot read"):
        load_stats(Path(tmp_path / "missing.json"))
    with pytest.raises(GenbaError, match="not a saved Normalizer"):
        Normalizer.load(tmp_path / "s.json")
