"""Equality of two collected datasets, episode for episode, and their columns: shared by the collection tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genba import keys
from genba.datasets.commit import read_all_episode_meta
from genba.datasets.writer import repo_id_for


def load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(repo_id_for(root), root=root)


def columns(root: Path) -> dict[str, np.ndarray]:
    """Every non-video column of a dataset, stacked over all its frames."""
    hf = load(root).hf_dataset.with_format("numpy")
    return {k: np.stack(hf[k]) for k in hf.column_names}


def assert_same_dataset(a: Path, b: Path, camera: str = keys.FRONT) -> None:
    """Same genba metadata per episode, same non-video columns, same frames up to video coding."""
    ma, mb = read_all_episode_meta(a), read_all_episode_meta(b)
    assert ma is not None and ma == mb
    da, db = load(a), load(b)
    assert da.num_episodes == db.num_episodes and da.num_frames == db.num_frames
    assert list(da.meta.tasks.index) == list(db.meta.tasks.index)
    ha, hb = da.hf_dataset.with_format("numpy"), db.hf_dataset.with_format("numpy")
    assert ha.column_names == hb.column_names
    for col in ha.column_names:
        np.testing.assert_array_equal(np.stack(ha[col]), np.stack(hb[col]), err_msg=col)
    cam = keys.image_key(camera)
    for i in range(len(da)):  # each file is encoded apart: close, not equal (AV1 is lossy)
        diff = (da[i][cam] - db[i][cam]).abs().mean().item()
        assert diff < 0.02, (i, diff)
