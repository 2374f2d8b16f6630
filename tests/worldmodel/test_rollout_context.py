"""The rollout loss's own context (`rollout_context`): from one real frame the rollout sees no motion and must take
it from the actions. The loss starts where the option says and scores the frames that follow; bad values are one
line, and `genba train-worldmodel` sets both rollout options from the command line."""

import pytest
import torch
import torch.nn.functional as F
from test_model import T, batch, small_config, trained_a_little

from genba import keys
from genba.errors import GenbaError
from genba.worldmodel.train_command import TrainWorldModelConfig, build


@pytest.mark.parametrize(("context", "steps"), [(1, T - 1), (2, 3), (0, 3)])
def test_the_rollout_loss_starts_from_rollout_context_real_frames(context, steps):
    model = trained_a_little(small_config(rollout_context=context, rollout_steps=steps))
    seen = []
    rollout = model._rollout

    def spy(x, z, vit, s, a, text, horizon):
        out = rollout(x, z, vit, s, a, text, horizon)
        seen.append((x.shape[1], a.shape[1], horizon, out[2]))
        return out

    model._rollout = spy
    b = batch()
    _, terms = model.loss(b)
    start = context or model.config.context_frames
    (frames, actions, horizon, pixels), = seen  # fmt: skip
    assert (frames, actions, horizon) == (start, start + steps - 1, steps)
    cams = model.config.cameras
    x = torch.stack([torch.cat([b[keys.image_key(c)], b[keys.future_image_key(c)]], 1) for c in cams], 2) / 255.0
    target = x[:, start : start + steps]  # the frames right after the real ones
    assert terms["rollout_pixel"] == pytest.approx(float(F.mse_loss(pixels.detach(), target)), rel=1e-5)


@pytest.mark.parametrize(("context", "steps", "message"), [
    (-1, 3, "rollout_context=-1 must be >= 0"),
    (4, 3, r"rollout loss's 4 real frames .* \+ rollout_steps=3 exceed clip_frames=6"),
    (0, 5, r"rollout loss's 2 real frames .* \+ rollout_steps=5 exceed clip_frames=6"),  # 0 = context_frames (2)
])  # fmt: skip
def test_a_rollout_that_does_not_fit_the_clip_is_one_line(context, steps, message):
    with pytest.raises(GenbaError, match=message) as e:
        small_config(rollout_context=context, rollout_steps=steps)
    assert "\n" not in str(e.value)


def test_train_worldmodel_sets_the_rollout_from_the_command_line(tiny_worldmodel_run, tmp_path):
    data = str(tiny_worldmodel_run["data"])
    parts = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "a"), rollout_steps=6, rollout_context=1,
                                        progress=False))  # fmt: skip
    assert (parts["model"].config.rollout_steps, parts["model"].config.rollout_context) == (6, 1)
    preset = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "b"), progress=False))["model"].config
    assert (preset.rollout_steps, preset.rollout_context) == (4, 0)  # tiny.yaml's
    with pytest.raises(GenbaError, match=r"rollout loss's 2 real frames .* \+ rollout_steps=7 exceed clip_frames=8"):
        build(TrainWorldModelConfig(data=data, out=str(tmp_path / "c"), rollout_steps=7, rollout_context=2,
                                    progress=False))  # fmt: skip
    with pytest.raises(GenbaError, match="rollout_steps=-2 must be >= -1"):
        TrainWorldModelConfig(data=data, rollout_steps=-2)
