"""Relabelled "where is it" queries (genba.datasets.scenes, genba.policies.relabel) and the VLA's localization
loss trained on them."""

import shutil

import numpy as np
import pytest
import torch

from genba import keys
from genba.datasets.commit import read_all_episode_meta
from genba.datasets.scenes import scene_queries
from genba.errors import GenbaError
from genba.policies.relabel import with_queries
from genba.policies.train_command import TrainPolicyConfig, run_train_policy
from genba.policies.vla_policy import VLAPolicy
from genba.sim.scene import phrase


def test_every_solid_object_of_a_scene_is_asked_for_in_the_episodes_own_template_and_language(tiny_vla_run):
    records = read_all_episode_meta(tiny_vla_run["data"])
    queries = scene_queries(tiny_vla_run["data"], "w_locate")
    assert len(queries) == len(records)
    for record, asked in zip(records, queries, strict=True):
        spec = record["spec"]
        assert asked[0] == (0, record["task"])  # the named object first, as the episode asked for it
        solids = [o for o in spec["objects"] if o["role"] in ("object", "distractor")]
        assert sorted(s for s, _ in asked) == sorted(o["slot"] for o in solids)
        for slot, text in asked:
            obj = next(o for o in solids if o["slot"] == slot)
            assert phrase(obj["color"], obj["shape"], spec["lang"]) in text
            template_words = record["task"].replace(phrase(solids[0]["color"], solids[0]["shape"], spec["lang"]), "")
            assert text.replace(phrase(obj["color"], obj["shape"], spec["lang"]), "") == template_words
        assert len({t for _, t in asked}) == len(asked)  # every object has its own colour: no two queries alike
    assert {r["spec"]["lang"] for r in records} == {"en", "ja"}  # the fixture's mixed languages were both checked


def test_each_sample_gets_one_of_its_own_episodes_queries_drawn_from_the_seed():
    queries = [[(0, "reach for the red cube"), (2, "reach for the blue ball")], [(0, "赤いボールに手を伸ばして")]]
    batch = {"episode_index": torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])}
    one = with_queries(batch, queries, np.random.default_rng(3))
    again = with_queries(batch, queries, np.random.default_rng(3))
    assert one[keys.LOCATE_TASK] == again[keys.LOCATE_TASK]
    assert torch.equal(one[keys.LOCATE_SLOT], again[keys.LOCATE_SLOT])
    slots = one[keys.LOCATE_SLOT].tolist()
    for e, text, slot in zip(batch["episode_index"].tolist(), one[keys.LOCATE_TASK], slots, strict=True):
        assert (slot, text) in queries[e]
    assert {one[keys.LOCATE_SLOT][i].item() for i in (0, 2, 3, 5, 6, 7)} == {0, 2}  # both of episode 0's objects
    assert one[keys.LOCATE_SLOT].dtype == torch.long


def test_a_dataset_genba_did_not_write_is_one_line(tiny_vla_run, tmp_path):
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_vla_run["data"], foreign)
    shutil.rmtree(foreign / "meta" / "genba")
    with pytest.raises(GenbaError, match="w_locate needs the scene of every episode") as e:
        scene_queries(foreign, "w_locate")
    assert "\n" not in str(e.value)


def test_the_tiny_locate_preset_trains_a_policy_that_acts(tiny_vla_run, tmp_path):
    cfg = TrainPolicyConfig(data=str(tiny_vla_run["data"]), out=str(tmp_path / "run"), preset="tiny-locate", steps=2,
                            batch_size=4, progress=False)  # fmt: skip
    summary = run_train_policy(cfg)
    assert np.isfinite(summary["final_loss"]) and summary["model"]["w_locate"] == 1.0
    assert summary["model"]["locate_token"] and summary["model"]["text_ngrams"] > 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert '"locate"' in lines[0]  # the training batches carried the queries
    policy = VLAPolicy(str(tmp_path / "run"))
    assert keys.OBS_ENV_STATE not in policy.input_spec.features  # training only: acting never reads it
    obs = {keys.image_key(c): np.zeros((64, 64, 3), np.uint8) for c in policy.model.config.cameras}
    policy.reset()
    out = policy.infer({**obs, keys.OBS_STATE: np.zeros(6, np.float32), keys.TASK: "reach for the red cube"})
    assert out[keys.ACTIONS].shape[1] == 6 and np.isfinite(out[keys.ACTIONS]).all()
