"""The world model on a small real config: shapes, the KV-cache rollout against the full forward, the kernel's
backends agreeing inside the model, gradients reaching every part, the backbone's text and contrastive parts,
local ViT weights, and one-line errors."""

import pytest
import safetensors.torch
import torch

from genba import keys
from genba.errors import GenbaError
from genba.train.checkpoint import load_model, save_checkpoint
from genba.worldmodel.backbone import Backbone, BackboneConfig, same_text, vision_transformer
from genba.worldmodel.model import WorldModel, WorldModelConfig

CAMS = ["front", "wrist"]
S, A, T, B = 5, 3, 6, 3
TASKS = ["put the red cube in the blue bin", "赤いキューブを青い箱に入れて", "put the red cube in the blue bin"]


def small_config(**kw) -> WorldModelConfig:
    bb = BackboneConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2, text_width=32, text_depth=1,
                        text_heads=2, embed_dim=16)  # fmt: skip
    base = dict(cameras=CAMS, state_dim=S, action_dim=A, backbone=bb, latent_dim=8, decoder_hidden=32, width=64,
                depth=2, heads=2, frame_window=3, context_frames=2, clip_frames=T, rollout_steps=3)  # fmt: skip
    return WorldModelConfig(**(base | kw))


def batch(seed: int = 0, t: int = T) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for cam in CAMS:
        frames = torch.randint(0, 256, (B, t, 3, 32, 32), generator=g, dtype=torch.uint8)
        out[keys.image_key(cam)], out[keys.future_image_key(cam)] = frames[:, :1], frames[:, 1:]
    state = torch.randn(B, t, S, generator=g)
    out[keys.OBS_STATE], out[keys.FUTURE_STATE] = state[:, :1], state[:, 1:]
    out[keys.ACTION] = torch.randn(B, t, A, generator=g)
    out[keys.TASK] = list(TASKS)
    return out


def trained_a_little(cfg: WorldModelConfig) -> WorldModel:
    """A model whose output heads are no longer zero (they start as copy-last), so predictions depend on inputs."""
    torch.manual_seed(0)
    model = WorldModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0 and p.dim() == 2:
                p.normal_(0, 0.05)
    return model


def test_loss_is_finite_and_every_part_gets_a_gradient():
    model = trained_a_little(small_config())  # at init the zero output heads stop the dynamics' gradient
    loss, metrics = model.loss(batch())
    assert torch.isfinite(loss)
    assert {"latent", "pixel", "state", "recon", "rollout_pixel", "rollout_state", "contrastive"} <= set(metrics)
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())  # 0-d, detached: no host copy here
    c, m = model.config, {k: float(v) for k, v in metrics.items()}
    want = sum(getattr(c, f"w_{k}") * m[k] for k in ("latent", "pixel", "state", "recon")) + c.w_rollout * (
        c.w_pixel * m["rollout_pixel"] + c.w_latent * m["rollout_latent"] + c.w_state * m["rollout_state"])  # fmt: skip
    assert m["prediction"] == pytest.approx(want, rel=1e-5)  # what best/ is chosen by: no contrastive term
    assert float(loss) == pytest.approx(want + c.w_contrastive * m["contrastive"], rel=1e-5)
    loss.backward()
    parts = ("backbone.vision", "backbone.text", "tokenizer", "decoder", "vit_in", "blocks", "lat_out", "state_out")
    for part in (*parts, "gate"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None for g in grads), part
        assert sum(float(g.abs().sum()) for g in grads) > 0, part


def test_a_few_steps_lower_the_loss_on_one_batch():
    torch.manual_seed(0)
    model = WorldModel(small_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    b = batch()
    first = float(model.loss(b)[0].detach())
    for _ in range(15):
        loss, _ = model.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.loss(b)[0].detach()) < 0.7 * first


@pytest.mark.parametrize("options", [{}, {"action_adaln": True, "text_ngrams": 64}], ids=["plain", "adaln+ngrams"])
def test_rollout_with_the_kv_cache_equals_the_full_forward_over_its_own_predictions(options):
    cfg = small_config(**options)
    model = trained_a_little(cfg).eval()
    b = batch()
    frames = torch.stack([torch.cat([b[keys.image_key(c)], b[keys.future_image_key(c)]], 1) for c in CAMS], 2)
    x = frames.float() / 255
    s = model.norm(torch.cat([b[keys.OBS_STATE], b[keys.FUTURE_STATE]], 1), "state")
    a = model.norm(b[keys.ACTION], "action")
    c, k = 2, 4
    with torch.no_grad():
        z, vit = model.encode(x[:, :c]), model.features(x[:, :c])
        text = model.instruction(TASKS)
        z_r, s_r, pix_r, _ = model._rollout(x[:, :c], z, vit, s[:, :c], a[:, : c + k - 1], text, k)
        # the same frames fed all at once through the block-causal forward: context, then the predictions
        z_all, s_all = torch.cat([z, z_r[:, :-1]], 1), torch.cat([s[:, :c], s_r[:, :-1]], 1)
        vit_all = torch.cat([vit, model.features(pix_r[:, :-1].clamp(0, 1))], 1)
        h = model._run(model._tokens(z_all, vit_all, s_all, a[:, : c + k - 1], text), a[:, : c + k - 1], 0)
        z_f, s_f = model._heads(h, z_all, s_all)
    torch.testing.assert_close(z_r, z_f[:, c - 1 :], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_r, s_f[:, c - 1 :], atol=1e-5, rtol=1e-5)
    assert (z_r[:, 1:] - z_r[:, :1]).abs().max() > 1e-3  # the frames differ: the comparison can fail


def test_patches_round_trip_and_an_unchanged_patch_keeps_its_latent():
    model = WorldModel(small_config())
    x = torch.rand(2, 3, len(CAMS), 3, 32, 32)
    patches = model._patchify(x)
    assert patches.shape == (2, 3, len(CAMS) * 4, 3 * 16 * 16)
    assert torch.equal(model._unpatchify(patches), x)
    torch.testing.assert_close(patches[0, 0, 1], x[0, 0, 0, :, :16, 16:].reshape(-1))  # camera 0, patch (0, 1)
    y = x.clone()
    y[:, :, 0, :, :16, :16] = 0.5  # change only patch (0, 0) of camera 0
    changed = (model.encode(x) - model.encode(y)).abs().amax(-1) > 0  # (2, 3, C * P)
    assert changed[..., 0].all() and not changed[..., 1:].any()


def test_rollout_takes_raw_units_and_gives_frames_and_state():
    model = trained_a_little(small_config()).eval()
    b = batch()
    images = {c: b[keys.image_key(c)].expand(B, 2, 3, 32, 32) for c in CAMS}
    out = model.rollout(images, torch.randn(B, 2, S), torch.randn(B, 2 + 5 - 1, A), TASKS, 5)
    assert {c: v.shape for c, v in out["images"].items()} == {c: (B, 5, 3, 32, 32) for c in CAMS}
    assert out["images"]["front"].dtype == torch.uint8 and out["state"].shape == (B, 5, S)
    with pytest.raises(GenbaError, match="needs state"):
        model.rollout(images, torch.randn(B, 2, S), torch.randn(B, 3, A), TASKS, 5)
    with pytest.raises(GenbaError, match="camera 'wrist'"):
        model.rollout({"front": images["front"]}, torch.randn(B, 2, S), torch.randn(B, 6, A), TASKS, 5)


def test_an_untrained_model_predicts_the_last_frame():
    """Zero-initialized output heads and the residual decode: at step 0 the model is exactly copy-last."""
    model = WorldModel(small_config()).eval()
    b = batch()
    images = {c: torch.cat([b[keys.image_key(c)], b[keys.future_image_key(c)]], 1)[:, :2] for c in CAMS}
    state = torch.randn(B, 2, S)
    out = model.rollout(images, state, torch.randn(B, 4, A), TASKS, 3)
    for c in CAMS:
        assert torch.equal(out["images"][c], images[c][:, -1:].expand(B, 3, 3, 32, 32))
    torch.testing.assert_close(out["state"], state[:, -1:].expand(B, 3, S))


@pytest.mark.usefixtures("interpreted")
@pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_triton_kernel_and_cpu_default_agree_inside_the_model():
    """backend=triton (Triton's interpreter here, the compiled kernel on a GPU) against auto (sdpa on CPU)."""
    cfg = small_config(depth=1, clip_frames=4, rollout_steps=2)
    model = trained_a_little(cfg)
    b = batch(t=4)
    loss_auto, _ = model.loss(b)
    g_auto = torch.autograd.grad(loss_auto, list(model.blocks.parameters()))
    model.config.backend = "triton"
    loss_tri, _ = model.loss(b)
    g_tri = torch.autograd.grad(loss_tri, list(model.blocks.parameters()))
    torch.testing.assert_close(loss_tri, loss_auto, atol=2e-5, rtol=2e-5)
    for a, t in zip(g_auto, g_tri, strict=True):
        torch.testing.assert_close(t, a, atol=2e-4, rtol=2e-4)


@pytest.fixture
def interpreted():
    import os

    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("CUDA machine: the kernel runs compiled there (tests/kernels/test_gpu.py)")
    from genba.kernels import triton_attention

    assert triton_attention.INTERPRET, "TRITON_INTERPRET=1 is not in effect (tests/conftest.py sets it)"


def test_checkpoint_round_trip_keeps_weights_and_normalization(tmp_path):
    model = trained_a_little(small_config())
    stats = {keys.OBS_STATE: {"mean": [1.0] * S, "std": [2.0] * S}, keys.ACTION: {"mean": [0.5] * A, "std": [3.0] * A}}
    model.set_stats(stats)
    save_checkpoint(tmp_path / "ck", model)
    loaded, config = load_model(tmp_path / "ck", kind="worldmodel")
    assert config == model.config and isinstance(config.backbone, BackboneConfig)
    for (n, p), q in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    assert torch.equal(loaded.state_std, torch.full((S,), 2.0))


def test_config_errors_are_one_line():
    with pytest.raises(GenbaError, match="head size"):
        small_config(width=96, heads=2)
    with pytest.raises(GenbaError, match="at least one camera"):
        small_config(cameras=[])
    with pytest.raises(GenbaError, match="rollout_steps=6 exceed clip_frames"):
        small_config(rollout_steps=6)
    with pytest.raises(GenbaError, match="multiple of patch_size"):
        BackboneConfig(image_size=40, patch_size=16)
    model = WorldModel(small_config())
    with pytest.raises(GenbaError, match="expects"):
        model.set_stats({keys.OBS_STATE: {"mean": [0.0] * 2, "std": [1.0] * 2}, keys.ACTION: {"mean": [0.0] * A}})


def test_text_encoder_reads_bytes_of_any_language():
    bb = Backbone(BackboneConfig(image_size=32, text_width=32, text_heads=2, text_depth=1, text_max_bytes=12))
    ids = bb.text.tokenize(["ab", "赤い箱に入れて"])  # 2 bytes; 7 characters x 3 bytes, cut at 12
    assert ids.shape == (2, 12)
    assert ids[0, :2].tolist() == [97, 98] and (ids[0, 2:] == 256).all()
    assert bytes(ids[1].tolist()).decode("utf-8") == "赤い箱に"
    tokens, pooled = bb.encode_text(["ab", "赤い箱に入れて"])
    assert tokens.shape == (2, 12, 32) and pooled.shape == (2, 32)


def test_siglip_loss_counts_repeated_instructions_as_positives():
    same = same_text(["a", "b", "a"])
    assert same.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    bb = Backbone(BackboneConfig(image_size=32, embed_dim=4))
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0]]), dim=-1)
    with torch.no_grad():
        bb.logit_scale.fill_(torch.log(torch.tensor(20.0)))
        bb.logit_bias.fill_(-10.0)
    matched = bb.contrastive_loss(e, e, same)
    shuffled = bb.contrastive_loss(e, e[[1, 0, 1]], same)
    assert float(matched.detach()) < 0.1 < float(shuffled.detach())


def test_local_vit_weights_load_and_a_mismatch_is_one_line(tmp_path):
    cfg = BackboneConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2)
    torch.manual_seed(1)
    source = vision_transformer(cfg)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "vit.safetensors"
    )
    torch.manual_seed(2)
    loaded = vision_transformer(BackboneConfig(**{**vars(cfg), "weights": str(tmp_path / "vit.safetensors")}))
    for k, v in source.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with pytest.raises(GenbaError, match="do not fit"):
        vision_transformer(BackboneConfig(image_size=32, patch_size=16, width=64, depth=1, heads=2,
                                          weights=str(tmp_path / "vit.safetensors")))  # fmt: skip
    with pytest.raises(GenbaError, match="never a pickle"):
        vision_transformer(BackboneConfig(image_size=32, weights=str(tmp_path / "vit.pth")))


def test_a_conv_stem_keeps_the_token_grid():
    """stem=conv: log2(p) stride-2 convolutions give the same (H/p)^2 tokens as the linear patch embedding."""
    torch.manual_seed(0)
    for patch in (8, 16):
        bb = Backbone(BackboneConfig(image_size=32, patch_size=patch, width=32, depth=1, heads=2, stem="conv"))
        assert bb.encode_images(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, (32 // patch) ** 2, 32)
    with pytest.raises(GenbaError, match="power-of-two"):
        BackboneConfig(image_size=48, patch_size=12, stem="conv")
    with pytest.raises(GenbaError, match="stem="):
        BackboneConfig(stem="resnet")


def test_byte_ngrams_share_a_words_grams_wherever_the_template_puts_it():
    from genba.worldmodel.backbone import ByteNGrams

    bag = ByteNGrams(4096, 8)
    red = set(bag.ids("red"))
    assert red <= set(bag.ids("reach for the red cube")) and red <= set(bag.ids("move the gripper to the red ball"))
    assert len(bag.ids("赤")) == 1  # one 3-byte character: one 3-gram, no 4- or 5-gram
    assert bag.ids("赤")[0] in bag.ids("赤いボールに手を伸ばして")
    assert bag.ids("") == [0] and bag.ids("ab") == [0]  # too short for a gram: the bag still has one entry
    assert bag.ids("red") == [3983]  # crc32, the same in every process (Python's hash() of bytes is salted)
    out = bag(["reach for the red cube", "", "赤いボール"])
    assert out.shape == (3, 8) and torch.isfinite(out).all()


def test_loss_runs_under_bf16_autocast():
    """How a GPU trains: q and k keep v's dtype through the rotary embedding (its tables are fp32)."""
    model = trained_a_little(small_config())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(batch())
    assert torch.isfinite(loss)
