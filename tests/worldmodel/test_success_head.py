"""The world model's success head: per-frame next.success labels from genba's metadata, batches that carry them, a
head that learns them, runs without it loading as before, the closed-loop `imagine` equal to `rollout`, and
train-worldmodel's success= choices."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from genba import keys
from genba.datasets.commit import read_all_episode_meta
from genba.errors import GenbaError
from genba.train.checkpoint import load_model, save_checkpoint
from genba.worldmodel.backbone import BackboneConfig
from genba.worldmodel.data import ClipBatches, clip_dataset, success_labels
from genba.worldmodel.model import WorldModel, WorldModelConfig
from genba.worldmodel.train_command import TrainWorldModelConfig, run_train_worldmodel

pytestmark = pytest.mark.xdist_group("worldmodel")


def tiny_config(**kw) -> WorldModelConfig:
    bb = BackboneConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2, text_width=32, text_depth=1,
                        text_heads=2, embed_dim=16)  # fmt: skip
    return WorldModelConfig(backbone=bb, latent_dim=8, decoder_hidden=32, width=64, depth=2, heads=2,
                            clip_frames=4, rollout_steps=2, **kw)  # fmt: skip


def test_labels_mark_the_last_frame_of_each_successful_episode(reach_wm_run):
    records = read_all_episode_meta(reach_wm_run["data"])
    ds = clip_dataset(str(reach_wm_run["data"]), 8, image_size=64, progress=False)
    labels = success_labels(ds)
    won = [r["episode_index"] for r in records if r["success"]]
    assert 0 < len(won) < len(records)  # the fixture holds both outcomes
    assert labels.shape == (ds.meta.total_frames,) and labels.sum() == len(won)
    assert sorted(np.flatnonzero(labels)) == sorted(int(ds.ep_to[e]) - 1 for e in won)
    batch = ClipBatches(ds, batch_size=64, shuffle=False, labels=labels)(0)[0]
    first = ds.rows[:64]  # window starts, unshuffled: frames t .. t+7 of one episode
    assert batch[keys.NEXT_SUCCESS].shape == (64, 8)
    torch.testing.assert_close(batch[keys.NEXT_SUCCESS], torch.from_numpy(labels[first[:, None] + np.arange(8)]))


def test_oversampling_draws_each_success_window_k_times(reach_wm_run):
    ds = clip_dataset(str(reach_wm_run["data"]), 8, image_size=64, progress=False)
    labels = success_labels(ds)
    plain, more = ClipBatches(ds, 4, labels=labels), ClipBatches(ds, 4, labels=labels, oversample=3)
    hit = [s for s in plain.starts if labels[ds.rows[s] : ds.rows[s] + 8].any()]
    assert len(hit) == int(labels.sum()) >= 1  # one window per successful episode ends on its success
    assert sorted(more.starts) == sorted([*plain.starts, *hit, *hit])
    drawn = np.concatenate([b[keys.NEXT_SUCCESS].numpy().ravel() for b in more(0)])
    assert (
        drawn.sum()
        == 3 * labels.sum()
        - sum(  # every positive drawn 3 times, but for the dropped last batch
            labels[ds.rows[s] : ds.rows[s] + 8].sum() for s in more(0).order[len(more) * 4 :]
        )
    )


def clip_batch(b: int) -> dict:
    """b random clips of 4 frames of one 32x32 camera, state (3,) and actions (2,), as the clip loader gives them."""
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (b, 4, 3, 32, 32), generator=g, dtype=torch.uint8)
    state = torch.randn(b, 4, 3, generator=g)
    return {keys.image_key("front"): frames[:, :1], keys.future_image_key("front"): frames[:, 1:],
            keys.OBS_STATE: state[:, :1], keys.FUTURE_STATE: state[:, 1:], keys.ACTION: torch.randn(b, 4, 2),
            keys.TASK: ["reach the cube"] * b}  # fmt: skip


def test_the_head_learns_labels_and_without_it_the_loss_is_as_before():
    torch.manual_seed(0)
    cfg = tiny_config(cameras=["front"], state_dim=3, action_dim=2, success_head=True, success_pos_weight=3.0)
    model = WorldModel(cfg)
    batch = clip_batch(4)
    labels = torch.zeros(4, 4)
    labels[:2, -1] = 1.0  # two clips end in success
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, terms = model.loss({**batch, keys.NEXT_SUCCESS: labels})
        first = terms["success"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert terms["success"] < 0.3 * first
    without = WorldModel(dataclasses.replace(cfg, success_head=False))
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("success_out.")})
    _, plain = without.loss(batch)
    _, headed = model.loss(batch)  # no labels in the batch: no success term
    assert "success" not in plain and "success" not in headed
    assert {k: float(v) for k, v in plain.items()} == pytest.approx({k: float(v) for k, v in headed.items()})


def test_the_head_also_judges_the_rollouts_imagined_frames():
    """With labels, `rollout_success` is the BCE of the head on the rollout loss's imagined frames, against the labels
    of the actions c-1 .. c+k-2; w_success_rollout=0 leaves it out."""
    torch.manual_seed(0)
    cfg = tiny_config(cameras=["front"], state_dim=3, action_dim=2, success_head=True)  # clip 4, context 2, rollout 2
    model = WorldModel(cfg)
    nn.init.constant_(model.success_out[-1].bias, -3.0)  # a head that says "not yet" everywhere
    batch = clip_batch(2)
    inside, outside = torch.zeros(2, 4), torch.zeros(2, 4)
    inside[:, 2], outside[:, 3] = 1.0, 1.0  # the rollout judges frames after actions 1 and 2, not after action 3
    _, none = model.loss({**batch, keys.NEXT_SUCCESS: torch.zeros(2, 4)})
    _, out = model.loss({**batch, keys.NEXT_SUCCESS: outside})
    _, into = model.loss({**batch, keys.NEXT_SUCCESS: inside})
    assert out["rollout_success"] == pytest.approx(none["rollout_success"])
    assert into["rollout_success"] > none["rollout_success"] + 1.0  # a positive it did not predict costs more
    assert out["success"] > none["success"]  # the teacher-forced term sees every frame
    _, off = WorldModel(dataclasses.replace(cfg, w_success_rollout=0.0)).loss({**batch, keys.NEXT_SUCCESS: inside})
    assert "rollout_success" not in off and "success" in off


def test_a_model_saved_without_the_head_loads_as_it_was(tmp_path):
    model = WorldModel(tiny_config(cameras=["front"], state_dim=3, action_dim=2))
    save_checkpoint(tmp_path / "ckpt", model)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    for name in ("success_head", "success_pos_weight", "w_success", "tasks", "fps"):
        config.pop(name)  # a config.json written before these fields existed
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    loaded, cfg = load_model(tmp_path / "ckpt", kind="worldmodel")
    assert not cfg.success_head and not hasattr(loaded, "success_out")
    dream = loaded.imagine({"front": torch.zeros(1, 3, 32, 32, dtype=torch.uint8)}, torch.zeros(1, 3), ["x"])
    assert loaded.imagine_step(dream, torch.zeros(1, 2))["success"] is None


def test_imagine_one_action_at_a_time_equals_the_open_loop_rollout():
    torch.manual_seed(1)
    model = WorldModel(tiny_config(cameras=["front", "wrist"], state_dim=3, action_dim=2, success_head=True))
    for p in model.parameters():  # away from the copy-last initialization, so the frames change
        p.data.add_(0.05 * torch.randn_like(p))
    model.eval()
    g = torch.Generator().manual_seed(2)
    images = {c: torch.randint(0, 256, (2, 1, 3, 32, 32), generator=g, dtype=torch.uint8) for c in ("front", "wrist")}
    state, actions, task = torch.randn(2, 1, 3, generator=g), torch.randn(2, 5, 2, generator=g), ["a", "b"]
    want = model.rollout(images, state, actions, task)
    dream = model.imagine({c: v[:, 0] for c, v in images.items()}, state[:, 0], task)
    steps = [model.imagine_step(dream, actions[:, k]) for k in range(5)]
    got_state = torch.stack([s["state"] for s in steps], 1)
    torch.testing.assert_close(got_state, want["state"], atol=1e-5, rtol=1e-5)
    for c in ("front", "wrist"):
        got = torch.stack([s["images"][c] for s in steps], 1).int()
        assert (got - want["images"][c].int()).abs().max() <= 1  # uint8 rounding of equal floats
    assert (want["state"][:, 1:] - want["state"][:, :1]).abs().max() > 1e-3  # the states move: the check can fail
    prob = torch.stack([s["success"] for s in steps], 1)
    assert prob.shape == (2, 5) and ((prob > 0) & (prob < 1)).all()


def test_the_reach_run_has_a_head_weighted_for_its_rare_positives(reach_wm_run):
    _, config = load_model(reach_wm_run["run"] / "last", kind="worldmodel")
    assert config.success_head and config.tasks == ["reach"] and config.fps == 10
    assert config.success_pos_weight > 10  # one positive frame per successful episode
    metrics = [json.loads(line) for line in (reach_wm_run["run"] / "metrics.jsonl").read_text().splitlines()]
    assert all("success" in m["metrics"] for m in metrics if "loss" in m)


def test_success_choices_of_train_worldmodel(reach_wm_run, tmp_path):
    cfg = TrainWorldModelConfig(data=str(reach_wm_run["data"]), out=str(tmp_path / "off"), steps=1, batch_size=2,
                                val_fraction=0.34, success=False, progress=False)  # fmt: skip
    run_train_worldmodel(cfg)
    assert not load_model(tmp_path / "off" / "last", kind="worldmodel")[1].success_head
    fails = tmp_path / "fails"  # the reach dataset's failed episodes only: no frame succeeds
    from genba.datasets.collect import CollectConfig, run_collect

    run_collect(CollectConfig(task="reach", episodes=3, image_size=64, noise=0.3, keep_failed=True, out=str(fails)))
    assert not any(r["success"] for r in read_all_episode_meta(fails))
    cfg = dataclasses.replace(cfg, data=str(fails), out=str(tmp_path / "on"), success=True)
    with pytest.raises(GenbaError, match=r"^success=true but no training frame of .* succeeds: the head needs both"):
        run_train_worldmodel(cfg)
