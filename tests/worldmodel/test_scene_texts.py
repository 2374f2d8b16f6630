"""Hindsight scene texts for the world model's contrastive loss (`contrastive_relabel`): each frame is paired with an
instruction naming one solid object of its scene, and every scene that holds that object (in that template and
language) counts as a positive, so the image side is asked what a scene holds rather than which scene it is."""

import numpy as np
import pytest
import torch
from test_model import batch, small_config, trained_a_little

from genba import keys
from genba.datasets.scenes import scene_queries
from genba.errors import GenbaError
from genba.worldmodel.backbone import same_text
from genba.worldmodel.data import with_scene_texts
from genba.worldmodel.train_command import TrainWorldModelConfig, build, run_train_worldmodel

QUERIES = [
    [(0, "pick up the red cube"), (2, "pick up the blue ball")],
    [(0, "pick up the blue ball"), (2, "pick up the green cube")],  # shares "blue ball" with episode 0's scene
    [(0, "赤いキューブを持ち上げて")],
]


def test_each_sample_names_an_object_of_its_own_scene_and_every_scene_holding_it_is_a_positive():
    b = {keys.EPISODE_INDEX: torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])}
    one = with_scene_texts(b, QUERIES, np.random.default_rng(5))
    again = with_scene_texts(b, QUERIES, np.random.default_rng(5))
    assert one[keys.CONTRAST_TASK] == again[keys.CONTRAST_TASK]  # seeded: the same pairs on every run and resume
    texts, same = one[keys.CONTRAST_TASK], one[keys.CONTRAST_SAME]
    assert same.dtype == torch.bool and same.shape == (8, 8)
    episodes = b[keys.EPISODE_INDEX].tolist()
    for i, e in enumerate(episodes):
        assert texts[i] in {t for _, t in QUERIES[e]}
        for j, t in enumerate(texts):
            assert bool(same[i, j]) == (t in {q for _, q in QUERIES[e]})
    assert same.diagonal().all()
    blue = [j for j, t in enumerate(texts) if t == "pick up the blue ball"]
    assert blue and all(same[i, j] for i in range(8) if episodes[i] in (0, 1) for j in blue)  # both scenes hold it
    assert len(set(texts)) > 2  # drawn, not always the episode's named object


def test_the_loss_pairs_the_frames_with_the_batch_texts_when_it_carries_them():
    model = trained_a_little(small_config())
    b = batch()
    _, plain = model.loss(b)
    as_own = {**b, keys.CONTRAST_TASK: list(b[keys.TASK]), keys.CONTRAST_SAME: same_text(list(b[keys.TASK]))}
    _, own = model.loss(as_own)
    assert own["contrastive"] == pytest.approx(float(plain["contrastive"]), rel=1e-6)  # the same pairs: the same term
    everyone = {**as_own, keys.CONTRAST_SAME: torch.ones_like(as_own[keys.CONTRAST_SAME])}
    _, relabelled = model.loss(everyone)
    assert float(relabelled["contrastive"]) != pytest.approx(float(plain["contrastive"]))
    assert relabelled["pixel"] == pytest.approx(float(plain["pixel"]))  # the dynamics still read the instruction


def test_train_worldmodel_trains_with_scene_texts_on_genba_data(tiny_worldmodel_run, tmp_path):
    data = str(tiny_worldmodel_run["data"])
    cfg = TrainWorldModelConfig(data=data, out=str(tmp_path / "run"), steps=2, batch_size=2, val_fraction=0.25,
                                contrastive_relabel=True, progress=False)  # fmt: skip
    parts = build(cfg)
    first = parts["data"](0)[0]
    queries = scene_queries(data, "contrastive_relabel")
    for e, text in zip(first[keys.EPISODE_INDEX].tolist(), first[keys.CONTRAST_TASK], strict=True):
        assert text in {t for _, t in queries[e]}
    assert all(keys.CONTRAST_TASK not in v for v in parts["val"])  # validation: the episodes' own instructions
    summary = run_train_worldmodel(cfg)
    assert summary["model"]["contrastive_relabel"] and np.isfinite(summary["final_loss"])
    preset = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "b"), progress=False))
    assert not preset["model"].config.contrastive_relabel  # tiny.yaml's default


def test_a_dataset_genba_did_not_write_is_one_line(reacher_dataset, tmp_path):
    cfg = TrainWorldModelConfig(data=str(reacher_dataset), out=str(tmp_path / "run"), contrastive_relabel=True,
                                progress=False)  # fmt: skip
    with pytest.raises(GenbaError, match="contrastive_relabel needs the scene of every episode") as e:
        build(cfg)
    assert "\n" not in str(e.value)
