"""The training loop on a tiny real MLP: it learns, its schedule, clipping, EMA, logs, NaN stop, exact resume."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_mlp
import torch

from genba.errors import GenbaError
from genba.train.checkpoint import load_model, load_trainer
from genba.train.loop import TrainConfig, _host, lr_at, train

HERE = Path(__file__).parent


def cfg(tmp_path, name="run", **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / name), steps=12, lr=1e-2, min_lr=1e-3, warmup=2, progress=False)
    return TrainConfig(**(base | kw))


def records(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def losses(out) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records(out) if "loss" in r]


def test_loss_goes_down(tmp_path):
    c = cfg(tmp_path, steps=80, lr=2e-2, min_lr=1e-3, warmup=5, weight_decay=0.0)
    summary = train(c, tiny_mlp.model(dropout=0.0, widths=(32,)), tiny_mlp.epochs())
    ls = [v for _, v in losses(c.out)]
    assert sum(ls[-8:]) / 8 < 0.2 * sum(ls[:8]) / 8
    assert summary["steps"] == 80 and summary["final_loss"] == ls[-1] and summary["device"] == "cpu"


def test_lr_schedule_values(tmp_path):
    c = cfg(tmp_path, steps=10, warmup=2, lr=1.0, min_lr=0.1)
    assert [lr_at(i, c) for i in (0, 1, 2)] == [0.5, 1.0, 1.0]  # warm-up, then cosine from its top
    assert lr_at(6, c) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # halfway: the middle
    assert lr_at(9, c) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 7 / 8)))
    assert lr_at(10, c) == pytest.approx(0.1) and lr_at(50, c) == pytest.approx(0.1)  # floor at min_lr
    assert all(lr_at(i, c) >= lr_at(i + 1, c) for i in range(1, 12))
    train(c, tiny_mlp.model(), tiny_mlp.epochs())
    assert [r["lr"] for r in records(c.out)] == [lr_at(i, c) for i in range(10)]  # the loop uses it, per step


def test_weight_decay_only_on_matrices(tmp_path):
    from genba.train.loop import make_optimizer

    opt = make_optimizer(tiny_mlp.model(), cfg(tmp_path, weight_decay=0.3))
    decayed = {p.dim() for g in opt.param_groups if g["weight_decay"] == 0.3 for p in g["params"]}
    plain = {p.dim() for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decayed == {2} and plain == {1}


@pytest.mark.parametrize("clip", [0.5, 0.0])
def test_grad_clipping_caps_the_norm(tmp_path, monkeypatch, clip):
    seen = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **kw):  # the norm the optimizer actually gets
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    c = cfg(tmp_path, steps=4, grad_clip=clip)
    train(c, tiny_mlp.model(), tiny_mlp.epochs(scale=100.0))
    raw = [r["grad_norm"] for r in records(c.out)]
    assert min(raw) > 10  # the targets are scaled so the raw norm is far above the cap
    if clip:
        assert max(seen) <= clip * (1 + 1e-4) and max(seen) > 0.9 * clip
    else:
        assert seen == pytest.approx(raw, rel=1e-5)


def test_ema_follows_its_formula(tmp_path):
    model = tiny_mlp.model()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    decay = 0.8

    def follow(record):  # called after each step's update: ema_k = d * ema_(k-1) + (1 - d) * w_k
        for k, v in model.state_dict().items():
            expected[k] = decay * expected[k] + (1 - decay) * v

    c = cfg(tmp_path, steps=6, ema=decay)
    train(c, model, tiny_mlp.epochs(), logger=follow)
    ema, _ = load_model(Path(c.out) / "last", ema=True)
    raw, _ = load_model(Path(c.out) / "last")
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(v, raw.state_dict()[k])
    train(cfg(tmp_path, "plain", steps=1, warmup=0), tiny_mlp.model(), tiny_mlp.epochs())
    with pytest.raises(GenbaError, match="no EMA"):
        load_model(tmp_path / "plain" / "last", ema=True)


def test_metrics_jsonl(tmp_path):
    seen = []
    c = cfg(tmp_path, steps=10, log_every=3, eval_every=5)
    x, y = tiny_mlp.dataset()
    val = [{"x": x[:16], "y": y[:16]}]
    summary = train(c, tiny_mlp.model(), tiny_mlp.epochs(), logger=seen.append, val=val)
    rs = records(c.out)
    assert rs == seen
    train_rs = [r for r in rs if "loss" in r]
    assert [r["step"] for r in train_rs] == [3, 6, 9, 10]  # every log_every, and the last step
    for r in train_rs:
        assert set(r) == {"step", "lr", "loss", "grad_norm", "metrics", "seconds"} and set(r["metrics"]) == {"mae"}
        assert math.isfinite(r["loss"]) and r["seconds"] >= 0
        assert all(type(v) is float for v in (r["loss"], r["grad_norm"], *r["metrics"].values()))  # on the host
    vals = [r for r in rs if "val" in r]
    assert [r["step"] for r in vals] == [5, 10] and set(vals[0]["val"]) == {"loss", "mae"}
    assert summary["best_val_loss"] == min(r["val"]["loss"] for r in vals)
    load_model(Path(c.out) / "best")  # the best model by validation loss is kept


def run_split(tmp_path, data, stop, **kw) -> tuple[str, str]:
    """The same run twice: uninterrupted, and stopped after `stop` then resumed by a second call."""
    whole = cfg(tmp_path, "whole", ema=0.9, **kw)
    train(whole, tiny_mlp.model(), data())
    part = cfg(tmp_path, "part", ema=0.9, stop_at=stop, **kw)
    first = train(part, tiny_mlp.model(), data())
    assert first["steps"] == stop and load_trainer(Path(part.out) / "last")[1]["step"] == stop
    second = train(cfg(tmp_path, "part", ema=0.9, resume=True, **kw), tiny_mlp.model(seed=99), data())
    assert second["resumed_from"] == str(Path(part.out) / "last")
    return whole.out, part.out


def assert_same(a, b) -> None:
    assert losses(a) == losses(b)  # every per-step loss, bit for bit
    assert [s for s, _ in losses(a)] == list(range(1, 13))
    ma, _ = load_model(Path(a) / "last")
    mb, _ = load_model(Path(b) / "last")
    for k, v in ma.state_dict().items():
        assert torch.equal(v, mb.state_dict()[k]), k
    ta, tb = load_trainer(Path(a) / "last")[0], load_trainer(Path(b) / "last")[0]
    for k in (k for k in ta if k.startswith(("ema.", "optim."))):
        assert torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("stop", [5, 8, 11])  # mid-epoch, at the end of epoch 0, inside epoch 1 (8 per epoch)
@pytest.mark.parametrize("kind", ["callable", "dataloader"])
def test_resume_is_exact(tmp_path, kind, stop):
    data = tiny_mlp.epochs if kind == "callable" else tiny_mlp.loader
    assert_same(*run_split(tmp_path, data, stop))


def test_resume_after_sigkill_is_exact(tmp_path):
    whole = cfg(tmp_path, "whole", save_every=4, ema=0.9)
    train(whole, tiny_mlp.model(), tiny_mlp.epochs())
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(HERE / "tiny_mlp.py"), str(out), "7"], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert load_trainer(out / "last")[1]["step"] == 4 and max(s for s, _ in losses(out)) == 7
    train(cfg(tmp_path, "killed", save_every=4, ema=0.9, resume=True), tiny_mlp.model(seed=5), tiny_mlp.epochs())
    assert_same(whole.out, out)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    c = cfg(tmp_path, save_every=2)
    with pytest.raises(GenbaError, match=r"loss is nan at step 4; the last good checkpoint is .*last") as e:
        train(c, tiny_mlp.model(), tiny_mlp.epochs(nan_batch=3))
    assert "\n" not in str(e.value)
    assert load_trainer(Path(c.out) / "last")[1]["step"] == 2
    load_model(Path(c.out) / "last")


def test_existing_run_needs_resume(tmp_path):
    c = cfg(tmp_path, steps=1, warmup=0)
    train(c, tiny_mlp.model(), tiny_mlp.epochs())
    with pytest.raises(GenbaError, match="resume=True"):
        train(c, tiny_mlp.model(), tiny_mlp.epochs())


def test_unseeded_shuffling_loader_is_refused(tmp_path):
    x, y = tiny_mlp.dataset()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    with pytest.raises(GenbaError, match=r"generator=torch\.Generator"):
        train(cfg(tmp_path), tiny_mlp.model(), dl)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps=0"),
        ({"warmup": 20}, "warmup=20"),
        ({"min_lr": 1.0}, "min_lr"),
        ({"ema": 1.0}, "ema=1.0"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"log_every": 0}, "log_every=0"),
        ({"save_every": -1}, "save_every=-1"),
        ({"grad_clip": -1.0}, "grad_clip=-1.0"),
    ],
)
def test_config_is_validated(tmp_path, kw, match):
    with pytest.raises(GenbaError, match=match):
        cfg(tmp_path, **kw)


def test_best_keeps_the_lowest_value_of_the_selected_validation_metric(tmp_path):
    seen: list[float] = []  # the sum of the first parameter tensor at each evaluation

    def evaluate(model) -> dict[str, float]:  # the total rises while the part that matters falls
        seen.append(float(next(model.parameters()).detach().sum()))
        return {"loss": float(len(seen)), "action": 1.0 / len(seen)}

    for select, kept in (("loss", 0), ("action", -1)):  # the first evaluation's weights, the last one's
        seen.clear()
        c = cfg(tmp_path, name=select, steps=6, eval_every=2, select=select)
        summary = train(c, tiny_mlp.model(), tiny_mlp.epochs(), evaluate=evaluate)
        assert len(seen) == 3 and summary["best_val_loss"] == (1.0 if select == "loss" else 1.0 / 3)
        best = float(next(load_model(Path(c.out) / "best")[0].parameters()).sum())
        assert best == pytest.approx(seen[kept], rel=1e-5) and best != pytest.approx(seen[-1 - kept], rel=1e-5)
    empty = train(cfg(tmp_path, name="empty", steps=2, eval_every=2, select="action"), tiny_mlp.model(),
                  tiny_mlp.epochs(), val=[])  # fmt: skip
    assert empty["best_val_loss"] is None and not (tmp_path / "empty" / "best").exists()  # nothing evaluated: no best
    with pytest.raises(GenbaError, match="select='accuracy' is not one of the validation metrics"):
        train(cfg(tmp_path, name="bad", steps=2, eval_every=2, select="accuracy"), tiny_mlp.model(), tiny_mlp.epochs(),
              evaluate=evaluate)  # fmt: skip


def test_values_reach_the_host_together_in_their_order():
    values = [torch.tensor(1.5), 2.0, torch.tensor([3.0], dtype=torch.float64), torch.tensor(4, dtype=torch.int64)]
    assert _host(values) == [1.5, 2.0, 3.0, 4.0]
    assert _host([]) == [] and _host([7]) == [7.0]
    with pytest.raises(RuntimeError):  # a metric must be one number
        _host([torch.zeros(2)])
