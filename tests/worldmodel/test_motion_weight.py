"""The motion-weighted pixel loss (`motion_weight`): the real frames' change weights each pixel's error, so the part
of the frame that moves (the arm, what it carries) counts more than the static background; 0 is the plain MSE."""

import pytest
import torch
import torch.nn.functional as F
from test_model import batch, small_config, trained_a_little

from genba.errors import GenbaError
from genba.worldmodel.model import _pixel_loss
from genba.worldmodel.train_command import TrainWorldModelConfig, build


def _frames():
    previous = torch.zeros(1, 1, 1, 3, 4, 4)  # (B, K, C, 3, H, W)
    target = previous.clone()
    target[..., 0, 0] = 1.0  # one pixel changed between the real frames
    return previous, target


def test_zero_is_the_plain_mse():
    previous, target = _frames()
    pred = torch.rand_like(target)
    assert torch.equal(_pixel_loss(pred, target, previous, 0.0), F.mse_loss(pred, target))


@pytest.mark.parametrize("weight", [5.0, 30.0])
def test_an_error_where_the_frame_moved_costs_more_and_one_where_it_did_not_less(weight):
    previous, target = _frames()
    moved, still = target.clone(), target.clone()
    moved[..., 0, 0] -= 0.5  # the same error, on the pixel that changed ...
    still[..., 3, 3] += 0.5  # ... or on one that did not
    plain = F.mse_loss(moved, target)
    assert float(F.mse_loss(still, target)) == pytest.approx(float(plain))
    w_moved, w_still = 1 + weight, 1.0  # the pixel's weight; the mean weight is (15 + 1 + weight) / 16
    mean_w = (15 + w_moved) / 16
    assert float(_pixel_loss(moved, target, previous, weight)) == pytest.approx(float(plain) * w_moved / mean_w)
    assert float(_pixel_loss(still, target, previous, weight)) == pytest.approx(float(plain) * w_still / mean_w)


def test_the_model_uses_it_for_both_pixel_terms():
    b = batch()
    plain = trained_a_little(small_config())
    weighted = trained_a_little(small_config(motion_weight=20.0))
    _, p = plain.loss(b)
    _, w = weighted.loss(b)
    assert w["latent"] == pytest.approx(p["latent"]) and w["state"] == pytest.approx(p["state"])  # same weights
    assert w["pixel"] != pytest.approx(p["pixel"]) and w["rollout_pixel"] != pytest.approx(p["rollout_pixel"])


def test_a_negative_weight_is_one_line(tiny_worldmodel_run):
    with pytest.raises(GenbaError, match=r"motion_weight=-0.5 must be >= 0 \(0 = plain MSE\)"):
        small_config(motion_weight=-0.5)
    with pytest.raises(GenbaError, match=r"motion_weight=-2.0 must be >= 0, or -1"):
        TrainWorldModelConfig(data=str(tiny_worldmodel_run["data"]), motion_weight=-2.0)


def test_train_worldmodel_sets_it_from_the_command_line(tiny_worldmodel_run, tmp_path):
    data = str(tiny_worldmodel_run["data"])
    parts = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "a"), motion_weight=20, progress=False))
    assert parts["model"].config.motion_weight == 20
    preset = build(TrainWorldModelConfig(data=data, out=str(tmp_path / "b"), progress=False))["model"].config
    assert preset.motion_weight == 0  # tiny.yaml's: the plain MSE
