"""The world model's two optional conditionings: adaLN-Zero on each frame's action (`action_adaln`) and the
instruction read as hashed byte n-grams (`text_ngrams`). Both start off, and runs saved before them load unchanged."""

import json

import pytest
import torch
from test_model import TASKS, batch, small_config, trained_a_little

from genba.errors import GenbaError
from genba.train.checkpoint import load_model, save_checkpoint
from genba.worldmodel.model import WorldModel


def test_adaln_starts_as_the_plain_model_and_its_modulation_learns():
    plain = trained_a_little(small_config())
    torch.manual_seed(0)
    ada = WorldModel(small_config(action_adaln=True))
    missing, unexpected = ada.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".ada." in k for k in missing)
    b = batch()
    assert torch.equal(plain.loss(b)[0], ada.loss(b)[0])  # zero-initialized: the same model at step 0
    loss, _ = ada.loss(b)
    loss.backward()
    grads = [p.grad for n, p in ada.named_parameters() if ".ada." in n]
    assert len(grads) == 2 * len(ada.blocks) and all(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        ada.blocks[0].ada.weight.normal_(0, 0.05)
    assert not torch.equal(plain.loss(b)[0], ada.loss(b)[0])  # the modulation changes the predictions


def test_adaln_rollouts_depend_on_the_actions_through_the_modulation_alone():
    """With the action's token and its addition to every token removed, only adaLN carries the action."""
    model = trained_a_little(small_config(action_adaln=True)).eval()
    images = {c: torch.randint(0, 256, (3, 2, 3, 32, 32), dtype=torch.uint8) for c in ("front", "wrist")}
    state, actions = torch.randn(3, 2, 5), torch.randn(3, 4, 3)
    model._tokens = _without_action(model)
    first = model.rollout(images, state, actions, TASKS, 3)["state"]
    other = model.rollout(images, state, actions.flip(0), TASKS, 3)["state"]
    assert (first - other).abs().max() > 1e-4
    for block in model.blocks:
        torch.nn.init.zeros_(block.ada.weight)
        torch.nn.init.zeros_(block.ada.bias)
    first = model.rollout(images, state, actions, TASKS, 3)["state"]
    torch.testing.assert_close(first, model.rollout(images, state, actions.flip(0), TASKS, 3)["state"])


def _without_action(model: WorldModel):
    tokens = model._tokens

    def patched(z, vit, s, a, text):  # the same tokens for any action
        return tokens(z, vit, s, torch.zeros_like(a), text)

    return patched


def test_ngrams_read_the_instruction_and_the_byte_transformer_is_frozen():
    model = trained_a_little(small_config(text_ngrams=64))
    loss, _ = model.loss(batch())
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.text.parameters())
    assert model.ngrams.embed.weight.grad.abs().sum() > 0
    a, b = model.embed_text(["put the red cube in the blue bin", "put the blue cube in the red bin"])
    assert not torch.allclose(a, b)
    torch.nn.init.zeros_(model.ngrams.embed.weight)  # the byte transformer tells them apart; the model must not
    a, b = model.embed_text(["put the red cube in the blue bin", "put the blue cube in the red bin"])
    torch.testing.assert_close(a, b)
    with pytest.raises(GenbaError, match="text_ngrams"):
        small_config(text_ngrams=-1)


def test_a_checkpoint_saved_before_the_options_loads_as_it_was(tmp_path):
    model = trained_a_little(small_config())
    save_checkpoint(tmp_path / "ck", model)
    path = tmp_path / "ck" / "config.json"
    config = json.loads(path.read_text())
    assert config.pop("action_adaln") is False and config.pop("text_ngrams") == 0
    path.write_text(json.dumps(config))  # as the runs of earlier sessions wrote it
    loaded, cfg = load_model(tmp_path / "ck", kind="worldmodel")
    assert not cfg.action_adaln and cfg.text_ngrams == 0
    for (n, p), q in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
