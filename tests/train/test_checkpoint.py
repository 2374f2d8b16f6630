"""The checkpoint folder: round trip, refusals in one line, no pickle, atomic replacement, trainer state."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import tiny_mlp
import torch

from genba.errors import GenbaError
from genba.train import checkpoint as ckpt
from genba.train.loop import TrainConfig, train
from genba.train.state import flatten, rng_state, set_rng_state, unflatten

STATS = {"observation.state": {"mean": np.arange(3, dtype=np.float32), "std": [1.0, 2.0, 3.0]}}
SPLIT = {"train": [0, 1, 2], "val": [3]}


def test_round_trip(tmp_path):
    model = tiny_mlp.model(widths=(8, 6), dropout=0.0)
    ckpt.save_checkpoint(tmp_path / "c", model, stats=STATS, split=SPLIT)
    loaded, config = ckpt.load_model(tmp_path / "c", kind="test-mlp")
    assert type(loaded) is tiny_mlp.MLP and config == model.config and config.widths == (8, 6)  # tuple again
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert meta["kind"] == "test-mlp" and meta["format"] == ckpt.FORMAT and meta["dropout"] == 0.0
    assert ckpt.load_json(tmp_path / "c", ckpt.STATS) == {"observation.state": {"mean": [0, 1, 2], "std": [1, 2, 3]}}
    assert ckpt.load_json(tmp_path / "c", ckpt.SPLIT) == SPLIT
    assert ckpt.load_json(tmp_path / "c", "absent.json") is None


def one_line_error(fn, match: str) -> str:
    with pytest.raises(GenbaError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_refusals_are_one_line(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c", tiny_mlp.model())
    one_line_error(
        lambda: ckpt.load_model(tmp_path / "c", kind="test-other"), "'test-mlp' checkpoint, not 'test-other'"
    )
    one_line_error(lambda: ckpt.load_model(tmp_path / "missing"), "no checkpoint at")
    (tmp_path / "plain").mkdir()
    one_line_error(lambda: ckpt.load_model(tmp_path / "plain"), "not a genba checkpoint")
    (tmp_path / "plain" / "config.json").write_text('{"hidden": 3}')
    one_line_error(lambda: ckpt.load_model(tmp_path / "plain"), "not a genba checkpoint")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta | {"kind": "nope"}))
    one_line_error(lambda: ckpt.load_model(tmp_path / "c"), "kind 'nope', which is not registered")
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta | {"hidden": 3}))
    one_line_error(lambda: ckpt.load_model(tmp_path / "c"), "unknown field 'hidden'")
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta | {"widths": [5]}))
    one_line_error(lambda: ckpt.load_model(tmp_path / "c"), "cannot load the weights")  # shapes do not fit
    one_line_error(lambda: ckpt.load_trainer(tmp_path / "c"), "no trainer state")
    with pytest.raises(GenbaError, match="not a registered model"):
        ckpt.save_checkpoint(tmp_path / "d", torch.nn.Linear(2, 2), tiny_mlp.MLPConfig())


def test_register_refuses_a_clash():
    with pytest.raises(ValueError, match="already registered"):
        ckpt.register_model("test-mlp", tiny_mlp.Other, tiny_mlp.MLPConfig)
    ckpt.register_model("test-mlp", tiny_mlp.MLP, tiny_mlp.MLPConfig)  # the same again is fine


def test_no_pickle_anywhere(tmp_path):
    c = TrainConfig(out=str(tmp_path / "run"), steps=3, warmup=1, ema=0.9, eval_every=3, progress=False)
    x, y = tiny_mlp.dataset()
    train(c, tiny_mlp.model(), tiny_mlp.epochs(), val=[{"x": x, "y": y}], stats=STATS, split=SPLIT)
    files = sorted(p for p in Path(c.out).rglob("*") if p.is_file())
    names = {p.relative_to(c.out).as_posix() for p in files}
    assert {
        "last/config.json",
        "last/model.safetensors",
        "last/stats.json",
        "last/split.json",
        "last/trainer.safetensors",
        "last/trainer.json",
        "best/model.safetensors",
        "metrics.jsonl",
    } <= names
    for p in files:
        head = p.read_bytes()[:2]
        assert not head.startswith(b"\x80") and not head.startswith(b"PK"), p  # pickle protocol 2+, torch zip
        if p.suffix == ".safetensors":
            safetensors.torch.load_file(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        else:
            assert p.suffix == ".jsonl", p
            [json.loads(line) for line in p.read_text().splitlines()]


def test_writer_killed_mid_write_leaves_the_previous_one(tmp_path, monkeypatch):
    first = tiny_mlp.model(seed=1)
    ckpt.save_checkpoint(tmp_path / "last", first, trainer_tensors={"a": torch.zeros(2)}, trainer_meta={"step": 1})

    def boom(*a, **kw):
        raise KeyboardInterrupt  # a Ctrl-C (or any failure) inside the write

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "last", tiny_mlp.model(seed=2), trainer_tensors={"a": torch.ones(2)})
    loaded, _ = ckpt.load_model(tmp_path / "last")
    assert torch.equal(loaded.net[0].weight, first.net[0].weight)
    assert ckpt.load_trainer(tmp_path / "last")[1] == {"step": 1}
    assert sorted(os.listdir(tmp_path)) == ["last"]  # the half-written folder is gone


def test_kill_between_the_renames_is_recovered(tmp_path):
    first = tiny_mlp.model(seed=1)
    ckpt.save_checkpoint(tmp_path / "last", first)
    os.replace(tmp_path / "last", tmp_path / ".last.old")  # what a kill after the first rename leaves
    loaded, _ = ckpt.load_model(tmp_path / "last")
    assert torch.equal(loaded.net[0].weight, first.net[0].weight)
    assert sorted(os.listdir(tmp_path)) == ["last"]
    ckpt.save_checkpoint(tmp_path / "last", tiny_mlp.model(seed=2))  # and a later save replaces it cleanly
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_optimizer_state_round_trips_exactly():
    model = tiny_mlp.model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    x, y = tiny_mlp.dataset()
    for _ in range(3):
        opt.zero_grad()
        model.loss({"x": x, "y": y})[0].backward()
        opt.step()
    tensors: dict[str, torch.Tensor] = {}
    structure = json.loads(json.dumps(flatten(opt.state_dict(), "optim", tensors)))  # through JSON text
    fresh = torch.optim.AdamW(model.parameters(), lr=1.0)
    fresh.load_state_dict(unflatten(structure, tensors))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for i, s in a["state"].items():
        for name, v in s.items():
            assert torch.equal(v, b["state"][i][name])


def test_rng_state_round_trips():
    random.seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    saved = rng_state()
    assert all(isinstance(v, torch.Tensor) for v in saved.values())
    want = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    set_rng_state(saved)
    got = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2:] == got[2:]
