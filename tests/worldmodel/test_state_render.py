"""`state_render`: a per-patch renderer adds to the next frame's latents what the joint states say (the recorded next
state when teacher-forced, the predicted one in rollouts), trained only by its own loss, so that predicted pictures
can follow the actions through the joints. It starts as the plain model, reads the states it is given, learns from
nothing but its own loss, and `genba train-worldmodel state_render=true` sets it."""

import pytest
import torch
from test_model import CAMS, TASKS, batch, small_config, trained_a_little

from genba import keys
from genba.worldmodel.model import WorldModel
from genba.worldmodel.train_command import TrainWorldModelConfig, build


def test_it_starts_as_the_plain_model_with_the_same_initial_weights():
    torch.manual_seed(0)
    plain = WorldModel(small_config())
    torch.manual_seed(0)
    rendered = WorldModel(small_config(state_render=True))
    new = {n for n in rendered.state_dict() if n.startswith("render_")}
    assert new and set(rendered.state_dict()) - set(plain.state_dict()) == new
    for name, value in plain.state_dict().items():  # created last: the same seed gives the other weights unchanged
        assert torch.equal(value, rendered.state_dict()[name]), name
    b = batch()
    (_, m_plain), (_, m) = plain.loss(b), rendered.loss(b)
    assert m["prediction"] == m_plain["prediction"]  # the renderer's output layer starts at zero: copy-last, as plain
    assert m["render_latent"] == m["latent"] and m["render_pixel"] == m["pixel"]  # both predict "nothing changes"


def test_the_renderer_reads_the_recorded_next_state_and_learns_only_from_its_own_loss():
    model = trained_a_little(small_config(state_render=True))
    b, other = batch(), batch()
    other[keys.FUTURE_STATE] = other[keys.FUTURE_STATE] + 1.0  # other recorded next states, same frames
    (_, m), (_, m_other) = model.loss(b), model.loss(other)
    assert m["render_latent"] != pytest.approx(m_other["render_latent"], rel=1e-4)
    assert m["latent"] != pytest.approx(m_other["latent"], rel=1e-4)  # the prediction adds the renderer's term
    for w_render, learns in ((0.0, False), (1.0, True)):
        model.zero_grad()
        model.config.w_render = w_render
        model.loss(b)[0].backward()
        grads = [p.grad for n, p in model.named_parameters() if n.startswith("render_")]
        assert all((g is not None and g.abs().sum() > 0) == learns for g in grads), w_render


def test_a_rollouts_frames_follow_its_predicted_joints():
    """Shift the state head's output: the first predicted frame moves with state_render, not without it (the first
    step's hidden tokens do not depend on the state head: only the render path carries its prediction)."""
    b = batch()
    images = {c: b[keys.image_key(c)].expand(-1, 2, -1, -1, -1) for c in CAMS}
    state, actions = torch.randn(3, 2, 5), torch.randn(3, 4, 3)
    for render, moves in ((True, True), (False, False)):
        model = trained_a_little(small_config(state_render=render)).eval()
        first = model.rollout(images, state, actions, TASKS, 2)["images"]
        with torch.no_grad():
            model.state_out.bias += 2.0
        shifted = model.rollout(images, state, actions, TASKS, 2)["images"]
        changed = any(not torch.equal(first[c][:, 0], shifted[c][:, 0]) for c in CAMS)
        assert changed == moves, render


def test_train_worldmodel_sets_it_from_the_command_line(tiny_worldmodel_run, tmp_path):
    data = str(tiny_worldmodel_run["data"])
    on = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "a"), state_render=True, progress=False))
    assert on["model"].config.state_render and hasattr(on["model"], "render_in")
    preset = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "b"), progress=False))["model"]
    assert not preset.config.state_render and not hasattr(preset, "render_in")  # tiny.yaml's: off
