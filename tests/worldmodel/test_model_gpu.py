"""The world model on a GPU: the compiled Triton kernel (backend=auto there) against sdpa inside the model.

fp32: loss and the dynamics blocks' gradients agree as on the CPU (where the interpreter runs the kernel).
bf16 autocast (how training runs on a GPU): the kernel's error against the fp32 model is at most 2x the error of the
same model with torch's own sdpa, FlashAttention's rule applied to the whole model's loss and gradients.
"""

import os

import pytest
import torch

from genba import keys
from genba.worldmodel.backbone import BackboneConfig
from genba.worldmodel.model import WorldModel, WorldModelConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU: test_model.py)"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter would run on the GPU"),
]
CAMS, S, A, T, B = ["front", "wrist"], 6, 6, 8, 4
TASKS = ["put the red cube in the blue bin", "赤いキューブを青い箱に入れて"] * 2


def _model() -> WorldModel:
    bb = BackboneConfig(image_size=64, patch_size=16, width=64, depth=2, heads=2, text_width=64, text_depth=1,
                        text_heads=2, embed_dim=32)  # fmt: skip
    cfg = WorldModelConfig(cameras=CAMS, state_dim=S, action_dim=A, backbone=bb, latent_dim=16, decoder_hidden=64,
                           width=128, depth=2, heads=2, frame_window=3, context_frames=2, clip_frames=T,
                           rollout_steps=3)  # fmt: skip
    torch.manual_seed(0)
    model = WorldModel(cfg)
    with torch.no_grad():  # the zero-initialized output heads would make the dynamics' gradients vanish
        for p in model.parameters():
            if p.dim() == 2 and p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model.cuda()


def _batch() -> dict:
    g = torch.Generator().manual_seed(0)
    out: dict = {}
    for cam in CAMS:
        frames = torch.randint(0, 256, (B, T, 3, 64, 64), generator=g, dtype=torch.uint8).cuda()
        out[keys.image_key(cam)], out[keys.future_image_key(cam)] = frames[:, :1], frames[:, 1:]
    state = torch.randn(B, T, S, generator=g).cuda()
    out[keys.OBS_STATE], out[keys.FUTURE_STATE] = state[:, :1], state[:, 1:]
    out[keys.ACTION] = torch.randn(B, T, A, generator=g).cuda()
    out[keys.TASK] = list(TASKS)
    return out


def _loss_and_grads(model: WorldModel, batch: dict, backend: str, bf16: bool) -> list[torch.Tensor]:
    model.config.backend = backend
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        loss, _ = model.loss(batch)
    grads = torch.autograd.grad(loss, list(model.blocks.parameters()))
    return [loss.detach().float(), *(g.float() for g in grads)]


def test_triton_and_sdpa_agree_inside_the_model_in_fp32():
    model, batch = _model(), _batch()
    ours, torch_ = (_loss_and_grads(model, batch, backend, bf16=False) for backend in ("auto", "sdpa"))
    torch.testing.assert_close(ours[0], torch_[0], atol=2e-5, rtol=2e-5)
    for t, s in zip(ours[1:], torch_[1:], strict=True):
        torch.testing.assert_close(t, s, atol=2e-4, rtol=2e-4)


def test_bf16_training_step_error_is_within_twice_sdpa():
    model, batch = _model(), _batch()
    exact = _loss_and_grads(model, batch, "sdpa", bf16=False)
    ours = _loss_and_grads(model, batch, "triton", bf16=True)
    torch_ = _loss_and_grads(model, batch, "sdpa", bf16=True)
    for i, (o, t, e) in enumerate(zip(ours, torch_, exact, strict=True)):
        ours_err, torch_err = (o - e).norm() / e.norm(), (t - e).norm() / e.norm()
        assert ours_err <= 2 * torch_err + 1e-3, f"tensor {i}: kernel {ours_err:.2e} > 2 x sdpa {torch_err:.2e}"
