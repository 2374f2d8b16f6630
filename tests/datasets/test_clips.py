"""Clip windows over a LeRobotDataset v3 written by lerobot itself with features genba did not choose (three cameras
of other names and a non-square size, fps 15, a Japanese instruction, an extra feature): window positions, strides,
padding, no cross-episode leakage, camera selection/renaming/resizing, the frame cache and its invalidation, batched
fetching through a real DataLoader, and one-line errors for bad input. Values against lerobot's own reader:
test_clips_interop.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from foreign_dataset import FPS, LENGTHS, STATE, TASKS, H, W

from genba.datasets.clips import ClipConfig, ClipDataset, collate_clips
from genba.errors import GenbaError
from genba.keys import FUTURE_IS_PAD, FUTURE_STATE, future_image_key


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def clips(data: Path, cache_dir: Path, **kw) -> ClipDataset:
    return ClipDataset(ClipConfig(data=str(data), cache_dir=str(cache_dir), **kw), progress=False)


def frame_of(state: torch.Tensor) -> np.ndarray:
    return (state[..., 0].numpy() % 1000).astype(int)


def test_an_action_chunk_longer_than_every_episode_is_padded(foreign, cache_dir):
    """A policy's chunk may outlast an episode (16 actions, 6-step reach episodes): the rows past the end repeat the
    last action and are flagged as padding, like lerobot's delta_timestamps."""
    horizon = max(LENGTHS) + 3
    ds = clips(foreign, cache_dir, obs_frames=1, action_horizon=horizon)
    s = ds[0]
    pad = s["action_is_pad"]
    assert s["action"].shape[0] == horizon and pad[LENGTHS[0] :].all() and not pad[: LENGTHS[0]].any()
    assert torch.equal(s["action"][LENGTHS[0] :], s["action"][LENGTHS[0] - 1].expand(horizon - LENGTHS[0], -1))


def test_windows_at_episode_edges(foreign, cache_dir):
    ds = clips(foreign, cache_dir, obs_frames=3, frame_stride=2, action_horizon=4, future_frames=2)
    assert len(ds) == sum(LENGTHS) and ds.fps == FPS
    start = LENGTHS[0]  # first frame of episode 1 (length 5)
    s = ds[start]
    assert s["episode_index"] == 1 and s["frame_index"] == 0 and s["index"] == start
    assert s[STATE + "_is_pad"].tolist() == [True, True, False]
    assert frame_of(s[STATE]).tolist() == [0, 0, 0]  # padding repeats the edge frame, as lerobot does
    assert s["action_is_pad"].tolist() == [False] * 4
    last = start + LENGTHS[1] - 1
    s = ds[last]
    assert s["frame_index"] == 4 and s[STATE + "_is_pad"].tolist() == [False, False, False]
    assert frame_of(s[STATE]).tolist() == [0, 2, 4]
    assert s["action_is_pad"].tolist() == [False, True, True, True]
    assert (s["action"][:, 0] % 1000).tolist() == [4.5] * 4
    assert s[FUTURE_IS_PAD].tolist() == [True, True] and frame_of(s[FUTURE_STATE]).tolist() == [4, 4]
    assert s["task"] == TASKS[1]


@pytest.mark.parametrize("to,stride,ta,tf,fstride", [(1, 1, 1, 0, 0), (2, 1, 16, 8, 0), (4, 3, 5, 3, 2)])
def test_every_window_matches_brute_force_and_stays_in_its_episode(foreign, cache_dir, to, stride, ta, tf, fstride):
    ds = clips(
        foreign, cache_dir, obs_frames=to, frame_stride=stride, action_horizon=ta, future_frames=tf,
        future_stride=fstride, cameras=["cam_high"],
    )  # fmt: skip
    fs = fstride or stride
    for i in range(len(ds)):
        s = ds[i]
        ep, f = s["episode_index"], s["frame_index"]
        n = LENGTHS[ep]
        want_obs = [f - (to - 1 - k) * stride for k in range(to)]
        want_act = [f + k for k in range(ta)]
        want_fut = [f + (k + 1) * fs for k in range(tf)]
        assert s[STATE + "_is_pad"].tolist() == [not 0 <= x < n for x in want_obs]
        assert s["action_is_pad"].tolist() == [not 0 <= x < n for x in want_act]
        assert frame_of(s[STATE]).tolist() == [min(max(x, 0), n - 1) for x in want_obs]
        assert (s["action"][:, 0].numpy() % 1000).tolist() == [min(max(x, 0), n - 1) + 0.5 for x in want_act]
        # no leakage: every value comes from this sample's episode
        assert (s[STATE][:, 0].numpy() // 1000 == ep).all() and (s["action"][:, 0].numpy() // 1000 == ep).all()
        if tf:
            assert s[FUTURE_IS_PAD].tolist() == [not 0 <= x < n for x in want_fut]
            assert frame_of(s[FUTURE_STATE]).tolist() == [min(max(x, 0), n - 1) for x in want_fut]
            assert s[future_image_key("cam_high")].shape == (tf, 3, H, W)
        assert s["observation.images.cam_high"].shape == (to, 3, H, W)
        assert s["observation.images.cam_high"].dtype == torch.uint8


def test_camera_selection_rename_resize_and_episode_subset(foreign, cache_dir):
    ds = clips(
        foreign, cache_dir, cameras=["cam_low", "observation.images.cam_high"], rename=["cam_high:front"],
        image_size=32, extra_keys=["observation.effort"],
    )  # fmt: skip
    s = ds[3]
    assert set(ds.cameras) == {"cam_low", "front"}
    assert s["observation.images.front"].shape == (2, 3, 32, 32) and "observation.images.cam_left_wrist" not in s
    assert s["observation.effort"].shape == (2, 2) and s["observation.effort"][:, 0].tolist() == [2, 3]
    full = clips(foreign, cache_dir, cameras=["cam_high"])
    from genba.datasets.frames import resize_frames

    assert torch.equal(s["observation.images.front"], resize_frames(full[3]["observation.images.cam_high"], 32))
    sub = ClipDataset(full.cfg, episodes=[2], progress=False)
    assert len(sub) == LENGTHS[2] and {sub[i]["episode_index"] for i in range(len(sub))} == {2}


def test_cache_equals_decoding_and_is_reused_then_invalidated(foreign, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(foreign, data)
    cache = tmp_path / "cache"
    kw = dict(cameras=["cam_left_wrist"], future_frames=3)
    cached = clips(data, cache, cache="disk", **kw)
    assert cached.cached and cached.cache_built
    decoded = clips(data, cache, cache="off", **kw)
    assert not decoded.cached
    from genba.datasets.bench import compare_samples

    for i in (0, 11, 12, 20, len(cached) - 1):
        assert compare_samples(cached[i], decoded[i]) == []
    again = clips(data, cache, cache="disk", **kw)
    assert not again.cache_built  # reused
    old = sorted(cache.glob("*/*.npy"))
    assert len(old) == 1
    parquet = sorted((data / "data").glob("*/*.parquet"))[0]
    parquet.touch()  # the dataset "changed": its fingerprint too
    changed = clips(data, cache, cache="disk", **kw)
    assert changed.cache_built
    new = sorted(cache.glob("*/*.npy"))
    assert len(new) == 1 and new != old  # the stale cache was deleted
    assert compare_samples(changed[5], decoded[5]) == []


def test_caches_of_two_sizes_coexist_and_only_a_stale_one_is_dropped(foreign, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(foreign, data)
    cache = tmp_path / "cache"
    small, large = (clips(data, cache, cameras=["cam_low"], image_size=s) for s in (32, 48))
    assert small.cache_built and large.cache_built
    assert not clips(data, cache, cameras=["cam_low"], image_size=32).cache_built  # building 48 kept 32's
    both = sorted(cache.glob("*/*.npy"))
    assert len(both) == 2
    sorted((data / "data").glob("*/*.parquet"))[0].touch()
    assert clips(data, cache, cameras=["cam_low"], image_size=32).cache_built
    now = sorted(cache.glob("*/*.npy"))
    assert len(now) == 2 and large.video["cam_low"].cache_file in now  # 32's stale cache replaced, 48's left


def test_batched_fetch_through_a_dataloader_equals_single_samples(foreign, cache_dir):
    from torch.utils.data import DataLoader, default_collate

    ds = clips(foreign, cache_dir, cameras=["cam_high", "cam_low"], future_frames=2, action_horizon=6)
    from genba.datasets.bench import compare_samples

    idx = [0, 11, 12, 16, 17, 36, 5]
    want = default_collate([ds[i] for i in idx])
    assert compare_samples(collate_clips(ds.__getitems__(idx)), want) == []
    assert compare_samples(default_collate(ds.__getitems__(idx)), want) == []  # torch's collate still works
    loader = DataLoader(ds, batch_size=7, num_workers=2, collate_fn=collate_clips, multiprocessing_context="fork")
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == len(ds)
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(len(ds)))
    first = default_collate([ds[i] for i in range(7)])
    assert compare_samples(batches[0], first) == []


def test_augmentation_is_seeded_per_sample_and_epoch(foreign, cache_dir):
    from genba.datasets.transforms import make_transforms

    aug = make_transforms(["shift:4", "jitter:0.3"])
    a = ClipDataset(clips(foreign, cache_dir, cameras=["cam_high"]).cfg, transform=aug, seed=7, progress=False)
    b = ClipDataset(a.cfg, transform=aug, seed=7, progress=False)
    plain = ClipDataset(a.cfg, progress=False)
    key = "observation.images.cam_high"
    assert torch.equal(a[5][key], b[5][key]) and not torch.equal(a[5][key], plain[5][key])
    b.set_epoch(1)
    assert not torch.equal(a[5][key], b[5][key])


def test_bad_input_is_one_clear_line(foreign, cache_dir, tmp_path):
    def err(**kw) -> str:
        with pytest.raises(GenbaError) as e:
            clips(kw.pop("data", foreign), cache_dir, **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "observation.nope" in err(state_key="observation.nope") and "observation.effort" in err(state_key="x")
    assert "1-D numeric" in err(state_key="observation.images.cam_high")
    msg = err(cameras=["wrist"])
    assert "'wrist'" in msg and "cam_high" in msg and "cam_low" in msg
    assert "longest episode" in err(obs_frames=40, frame_stride=2)  # observation frames must fit; actions may pad
    assert "no such folder" in err(data=tmp_path / "missing" / "x" / "y")
    assert "meta/info.json" in err(data=tmp_path)
    assert "hub download failed" in err(data="genba-tests/no-such-dataset-4c1e")  # offline or a 404: same error
    assert "rename" in err(rename=["cam_nope:front"])
    with pytest.raises(ValueError, match="obs_frames"):
        ClipConfig(data="x", obs_frames=0)
    with pytest.raises(ValueError, match="cache"):
        ClipConfig(data="x", cache="ram")

    bad = tmp_path / "bad_parquet"
    shutil.copytree(foreign, bad)
    pq = sorted((bad / "data").glob("*/*.parquet"))[0]
    pq.write_bytes(pq.read_bytes()[: pq.stat().st_size // 2])
    msg = err(data=bad)
    assert str(pq) in msg and "episodes [0, 1, 2]" in msg

    bad = tmp_path / "bad_video"
    shutil.copytree(foreign, bad)
    mp4 = sorted((bad / "videos" / "observation.images.cam_low").glob("*/*.mp4"))[0]
    mp4.write_bytes(b"\x00" * 4096)
    msg = err(data=bad, cache="off")
    assert str(mp4) in msg and "episode 0" in msg and "cam_low" in msg
    mp4.unlink()
    assert "missing video file" in err(data=bad, cache="off")

    bad = tmp_path / "bad_shape"  # meta/info.json declares another frame size than the video holds
    shutil.copytree(foreign, bad)
    info = json.loads((bad / "meta" / "info.json").read_text())
    info["features"]["observation.images.cam_high"]["shape"] = [32, 40, 3]
    (bad / "meta" / "info.json").write_text(json.dumps(info))
    msg = err(data=bad, cameras=["cam_high"])
    assert f"frames are {H}x{W}, meta/info.json says 32x40" in msg and "episode 0" in msg
