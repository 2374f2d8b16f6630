"""The VLA model (genba.policies.vla): losses, sampling, and that it learns to read its instruction."""

import pytest
import torch

from genba import keys
from genba.errors import GenbaError
from genba.policies.vla import VLA, VLAConfig, random_shift
from genba.worldmodel.backbone import BackboneConfig

SMALL = BackboneConfig(image_size=16, patch_size=8, width=32, depth=1, heads=2, text_width=32, text_depth=1,
                       text_heads=2, embed_dim=16)  # fmt: skip


def small_config(**kw) -> VLAConfig:
    base = dict(backbone=SMALL, cameras=["front"], image_size=32, state_dim=3, action_dim=2, horizon=4,
                n_action_steps=2, width=32, fusion_depth=1, expert_depth=1, heads=2, shift_pixels=0)  # fmt: skip
    return VLAConfig(**{**base, **kw})


def batch(tasks: list[str], actions: torch.Tensor, seed: int = 0) -> dict:
    """Images and state that say nothing about the action: only the instruction does."""
    g = torch.Generator().manual_seed(seed)
    b = len(tasks)
    return {
        keys.image_key("front"): torch.randint(0, 256, (b, 1, 3, 32, 32), dtype=torch.uint8, generator=g),
        keys.OBS_STATE: torch.randn(b, 1, 3, generator=g),
        keys.ACTION: actions,
        keys.TASK: tasks,
    }


@pytest.mark.parametrize(("head", "keypoints", "patch_tokens"), [("flow", 0, True), ("l1", 0, True), ("flow", 3, True),
                                                                  ("flow", 3, False)])  # fmt: skip
def test_loss_is_finite_and_reaches_every_part(head, keypoints, patch_tokens):
    torch.manual_seed(0)
    model = VLA(small_config(head=head, w_contrastive=0.5, keypoints=keypoints, patch_tokens=patch_tokens))
    b = batch(["pick up the red cube", "赤いキューブを拾って"], torch.randn(2, 4, 2))
    loss, metrics = model.loss(b)
    assert torch.isfinite(loss) and set(metrics) == {"action", "contrastive"}
    loss.backward()
    parts = [model.backbone.vision, model.backbone.text, model.fusion, model.expert, model.state_in]
    memory, _, emb = model.prefix({"front": b[keys.image_key("front")][:, 0]}, b[keys.OBS_STATE][:, 0], b[keys.TASK])
    assert ("image" in emb) == patch_tokens  # acting never runs a ViT whose tokens it does not read
    n_text = model.backbone.text.tokenize(b[keys.TASK], memory.device).shape[1]
    patches = (16 // 8) ** 2 if patch_tokens else 0  # 32x32 frames, resized to the backbone's 16: 2x2 patches of 8
    assert memory.shape[1] == patches + keypoints + n_text + 1
    for part in parts + ([model.keypoints, model.keypoint_in] if keypoints else []):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


def test_the_environment_state_loss_trains_a_head_on_the_fused_prefix():
    torch.manual_seed(0)
    model = VLA(small_config(w_contrastive=0.0, w_env_state=1.0, env_state_dim=5))
    model.set_stats({keys.OBS_STATE: {"mean": [0.0] * 3, "std": [1.0] * 3},
                     keys.ACTION: {"mean": [0.0] * 2, "std": [1.0] * 2},
                     keys.OBS_ENV_STATE: {"mean": [0.0] * 5, "std": [1.0, 1e-6, 2.0, 0.0, 1.0]}})  # fmt: skip
    assert model.env_state_std.tolist() == pytest.approx(
        [1.0, 0.01, 2.0, 0.01, 1.0]
    )  # a resting feature is not blown up
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    b[keys.OBS_ENV_STATE] = torch.randn(2, 1, 5)
    loss, metrics = model.loss(b)
    assert set(metrics) == {"action", "env_state"} and loss > metrics["action"]
    loss.backward()
    assert model.env_state_out[0].weight.grad.abs().sum() > 0
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.vision.parameters())
    without = VLA(small_config(w_contrastive=0.0))
    assert "env_state_mean" not in without.state_dict() and not hasattr(without, "env_state_out")


def test_with_keypoints_the_environment_state_comes_from_the_cameras_alone():
    torch.manual_seed(0)
    model = VLA(small_config(w_contrastive=0.0, w_env_state=1.0, env_state_dim=5, keypoints=3))
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    b[keys.OBS_ENV_STATE] = torch.randn(2, 1, 5)
    _, metrics = model.loss(b)
    images = {"front": b[keys.image_key("front")][:, 0]}
    _, _, emb = model.prefix(images, b[keys.OBS_STATE][:, 0], b[keys.TASK])
    env = model.norm(b[keys.OBS_ENV_STATE][:, -1], "env_state")
    aux = torch.nn.functional.mse_loss(model.env_state_out(emb["keypoints"]), env)
    assert aux.item() == pytest.approx(float(metrics["env_state"]), rel=1e-5)  # the loss reads the keypoints
    aux.backward()
    assert model.state_in.weight.grad is None  # no path from the joints to the position it predicts
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.keypoints.parameters())


def test_the_localization_loss_asks_the_keypoints_where_the_queried_slot_is():
    torch.manual_seed(0)
    model = VLA(small_config(w_contrastive=0.0, keypoints=3, w_locate=1.0, env_state_dim=21, text_ngrams=64))
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    env = torch.zeros(2, 1, 21)
    env[0, 0, 14:16] = torch.tensor([0.1, -0.2])  # sample 0 asks for slot 2
    env[1, 0, 0:2] = torch.tensor([0.3, 0.0])  # sample 1 for slot 0
    env[1, 0, 7:9] = 5.0  # a slot nobody asks for
    b[keys.OBS_ENV_STATE] = env
    b[keys.LOCATE_TASK] = ["reach for the blue ball", "reach for the red cube"]
    b[keys.LOCATE_SLOT] = torch.tensor([2, 0])
    last = model.locate_out[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # predicts (0, 0): the loss is the targets' mean square, in units of 0.1 m
    _, metrics = model.loss(b)
    assert metrics["locate"] == pytest.approx(((1.0**2 + 2.0**2) + 3.0**2) / 4, rel=1e-5)
    torch.nn.init.normal_(last.weight)
    torch.nn.init.normal_(model.keypoints[0].film.weight)  # zero at the start: no gradient reaches the text yet
    loss, _ = model.loss(b)
    loss.backward()
    assert model.ngrams.embed.weight.grad.abs().sum() > 0  # the query's n-grams condition the keypoints
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.keypoints.parameters())
    del b[keys.LOCATE_TASK]
    assert "locate" not in model.loss(b)[1]  # validation batches carry no queries
    with pytest.raises(GenbaError, match="needs keypoints"):
        small_config(w_locate=1.0, env_state_dim=21)
    with pytest.raises(GenbaError, match="locate_token=true reads the localization head"):
        small_config(locate_token=True, keypoints=3)
    with pytest.raises(GenbaError, match="objects' positions"):
        small_config(w_locate=1.0, keypoints=3)


def test_the_located_object_is_one_more_prefix_token_that_the_action_loss_does_not_train():
    torch.manual_seed(0)
    model = VLA(small_config(w_contrastive=0.0, keypoints=3, w_locate=1.0, env_state_dim=21, locate_token=True))
    plain = VLA(small_config(w_contrastive=0.0, keypoints=3, w_locate=1.0, env_state_dim=21))
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    images, state = {"front": b[keys.image_key("front")][:, 0]}, b[keys.OBS_STATE][:, 0]
    memory, pad, _ = model.prefix(images, state, b[keys.TASK])
    assert memory.shape[1] == plain.prefix(images, state, b[keys.TASK])[0].shape[1] + 1
    assert not pad[:, 7].any()  # 4 patches, 3 keypoints, then the located object: never padding
    b[keys.OBS_ENV_STATE] = torch.zeros(2, 1, 21)
    model.loss(b)[0].backward()  # no queries in the batch: the action loss alone
    assert model.locate_in[0].weight.grad.abs().sum() > 0
    assert model.locate_out[-1].weight.grad is None  # what the token says is the localization loss's to train


def test_locate_teacher_puts_the_named_objects_true_position_in_the_token_while_training():
    torch.manual_seed(0)
    cfg = dict(head="l1", w_contrastive=0.0, keypoints=3, w_locate=1.0, env_state_dim=21, locate_token=True)
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    b[keys.OBS_ENV_STATE] = torch.zeros(2, 1, 21)
    b[keys.OBS_ENV_STATE][:, 0, :2] = torch.tensor([[0.1, -0.05], [0.2, 0.15]])  # slot 0: the named object

    def action_loss(model: VLA, env: torch.Tensor | None = None) -> float:
        with torch.no_grad():
            return float(model.loss({**b, keys.OBS_ENV_STATE: b[keys.OBS_ENV_STATE] if env is None else env})[0])

    for teacher, head_matters in ((1.0, False), (0.0, True)):
        model = VLA(small_config(**cfg, locate_teacher=teacher)).train()
        before = action_loss(model)
        torch.nn.init.normal_(model.locate_out[-1].weight)  # the head now answers something else
        assert (action_loss(model) != before) == head_matters
    moved = b[keys.OBS_ENV_STATE].clone()
    moved[:, 0, 0] += 0.1
    assert action_loss(model.train()) == action_loss(model, moved)  # teacher 0: the true position is never read
    model = VLA(small_config(**cfg, locate_teacher=1.0)).train()
    assert action_loss(model) != action_loss(model, moved)
    model.eval()  # validation and acting read the head
    assert action_loss(model) == action_loss(model, moved)
    with pytest.raises(GenbaError, match=r"the batch has no observation\.environment_state"):
        model.train().loss({k: v for k, v in b.items() if k != keys.OBS_ENV_STATE})
    with pytest.raises(GenbaError, match="must be in"):
        small_config(**cfg, locate_teacher=1.5)
    with pytest.raises(GenbaError, match="needs locate_token=true"):
        small_config(**{**cfg, "locate_token": False}, locate_teacher=0.5)


def test_with_text_ngrams_the_keypoints_read_the_instructions_ngrams_alone():
    torch.manual_seed(0)
    model = VLA(small_config(keypoints=3, text_ngrams=64))
    torch.nn.init.normal_(model.keypoints[0].film.weight)  # FiLM starts at zero: make the instruction matter
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    images, state = {"front": image.expand(2, -1, -1, -1)}, torch.zeros(2, 3)
    tasks = ["reach for the red cube", "move the gripper to the blue ball"]
    _, _, emb = model.prefix(images, state, tasks)
    assert not torch.allclose(emb["keypoints"][0], emb["keypoints"][1])
    torch.nn.init.zeros_(model.ngrams.embed.weight)  # the byte transformer still tells the two apart; FiLM must not
    _, _, flat = model.prefix(images, state, tasks)
    assert torch.allclose(flat["keypoints"][0], flat["keypoints"][1])


def test_state_dropout_hides_the_joints_from_a_fraction_of_the_training_samples():
    torch.manual_seed(0)
    model = VLA(small_config(state_dropout=0.5))
    b = batch(["reach for the red cube"] * 2, torch.randn(2, 4, 2))
    images = {"front": b[keys.image_key("front")][:, 0]}
    hidden = torch.tensor([True, True])
    one, _, _ = model.prefix(images, b[keys.OBS_STATE][:, 0], b[keys.TASK], hidden)
    other, _, _ = model.prefix(images, 100 + b[keys.OBS_STATE][:, 0], b[keys.TASK], hidden)
    assert torch.equal(one, other)  # the state does not reach the prefix at all
    seen, _, _ = model.prefix(images, b[keys.OBS_STATE][:, 0], b[keys.TASK])
    assert not torch.allclose(one, seen)
    model.train()
    model.loss(b)[0].backward()
    assert model.no_state.grad is not None  # the learned token trains (B = 2, p = 0.5: seeded to draw one)
    with pytest.raises(GenbaError, match="state_dropout"):
        small_config(state_dropout=1.0)


def test_sample_is_in_raw_units_and_follows_the_generator():
    torch.manual_seed(0)
    model = VLA(small_config()).eval()
    model.set_stats({keys.OBS_STATE: {"mean": [0.0] * 3, "std": [1.0] * 3},
                     keys.ACTION: {"mean": [100.0, -100.0], "std": [0.01, 0.01]}})  # fmt: skip
    b = batch(["reach for the blue ball"] * 3, torch.zeros(3, 4, 2))
    images = {"front": b[keys.image_key("front")][:, 0]}
    a = model.sample(images, b[keys.OBS_STATE][:, 0], b[keys.TASK], generator=torch.Generator().manual_seed(1))
    again = model.sample(images, b[keys.OBS_STATE][:, 0], b[keys.TASK], generator=torch.Generator().manual_seed(1))
    other = model.sample(images, b[keys.OBS_STATE][:, 0], b[keys.TASK], generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 4, 2)
    assert torch.equal(a, again) and not torch.equal(a, other)
    assert (a[..., 0] - 100).abs().max() < 1 and (a[..., 1] + 100).abs().max() < 1  # unnormalized with the stats


@pytest.mark.parametrize("head", ["flow", "l1"])
def test_it_learns_to_act_on_the_instruction_alone(head):
    """Two instructions, in two scripts, ask for opposite chunks; the images and state are noise. After brief
    training the policy's chunk must follow the words (an untrained one does not)."""
    torch.manual_seed(0)
    model = VLA(small_config(head=head, w_contrastive=0.0))
    words = ["move left", "右へ動かして"]
    signs = torch.tensor([1.0, -1.0])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def chunk_signs(m: VLA) -> torch.Tensor:
        m.eval()
        b = batch(words * 4, torch.zeros(8, 4, 2), seed=99)
        a = m.sample({"front": b[keys.image_key("front")][:, 0]}, b[keys.OBS_STATE][:, 0], b[keys.TASK],
                     generator=torch.Generator().manual_seed(0))  # fmt: skip
        m.train()
        return a.mean(dim=(1, 2)).sign()  # (8,)

    want = signs.repeat(4)
    assert not torch.equal(chunk_signs(model), want)  # the test can fail: untrained, it does not follow the words
    for step in range(150):
        pick = torch.randint(0, 2, (8,))
        b = batch([words[i] for i in pick], signs[pick][:, None, None].expand(8, 4, 2).clone(), seed=step)
        loss, _ = model.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(chunk_signs(model), want)


def test_keypoints_are_the_expected_positions_of_their_heat_maps():
    """K (x, y) positions inside the frame, a function of the frame and the instruction (through FiLM)."""
    from genba.policies.vla import Keypoints

    torch.manual_seed(0)
    head = Keypoints(4, text_width=8)
    frames = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    points = head(frames, torch.zeros(3, 8))
    assert points.shape == (3, 4, 2) and points.abs().max() <= 1
    assert torch.allclose(points[0], points[1])  # the same frame and instruction: the same keypoints
    # the instruction moves them (FiLM) once its projection is not zero
    torch.nn.init.normal_(head.film.weight)
    assert not torch.allclose(head(frames[:1], torch.ones(1, 8)), head(frames[:1], -torch.ones(1, 8)))


def test_random_shift_moves_each_image_by_at_most_the_pad():
    torch.manual_seed(0)
    frames = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    frames[:, :, 8, 8] = 255  # one bright pixel in the middle
    shifted = random_shift(frames, 2)
    assert shifted.dtype == torch.uint8 and shifted.shape == frames.shape
    where = [torch.nonzero(s[0] == 255)[0] for s in shifted]
    assert all((w - 8).abs().max() <= 2 for w in where)
    assert len({tuple(w.tolist()) for w in where}) > 1  # not all the same shift


def test_bad_configs_are_one_line():
    with pytest.raises(GenbaError, match="head="):
        small_config(head="diffusion")
    with pytest.raises(GenbaError, match="n_action_steps"):
        small_config(n_action_steps=5)
    with pytest.raises(GenbaError, match="at least one camera"):
        small_config(cameras=[])
    with pytest.raises(GenbaError, match="see no image"):
        small_config(patch_tokens=False)
    with pytest.raises(GenbaError, match="env_state_dim"):
        small_config(w_env_state=1.0)
    model = VLA(small_config())
    b = batch(["x"], torch.zeros(1, 4, 2))
    with pytest.raises(GenbaError, match="missing"):
        model.prefix({"wrist": b[keys.image_key("front")][:, 0]}, b[keys.OBS_STATE][:, 0], ["x"])


def test_the_loss_runs_under_bf16_autocast():
    """How the shared loop trains on a GPU (the world model once handed its kernel mixed dtypes there)."""
    torch.manual_seed(0)
    model = VLA(small_config(keypoints=3, w_locate=1.0, env_state_dim=21, locate_token=True, text_ngrams=64))
    b = batch(["reach for the red cube", "赤いキューブに手を伸ばして"], torch.randn(2, 4, 2))
    b[keys.OBS_ENV_STATE] = torch.zeros(2, 1, 21)
    b[keys.LOCATE_TASK], b[keys.LOCATE_SLOT] = ["reach for the blue ball"] * 2, torch.tensor([2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = model.loss(b)
    loss.backward()
    assert torch.isfinite(loss) and {"action", "contrastive", "locate"} <= set(metrics)
