"""The training loop under `torchrun --nproc_per_node=2` on CPU (gloo): two processes step like one process on the
concatenation of their batches, keep the same weights, write once (rank 0), stop together on a NaN, resume exactly,
and refuse a data stream that differs between ranks. The runs are made by ddp_script.py, two launches in all."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import ddp_script
import pytest
import safetensors.torch
import tiny_mlp
import torch
import torch.distributed

from genba.errors import GenbaError
from genba.train import dist
from genba.train.checkpoint import load_model, load_trainer
from genba.train.loop import train

HERE = Path(__file__).parent

pytestmark = [
    pytest.mark.xdist_group("train_ddp"),  # one xdist worker: the module fixture launches torchrun once
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    for mode in ("first", "resume"):  # a fresh pair of processes resumes what the first pair stopped at STOP
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += [str(HERE / "ddp_script.py"), str(root), mode]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=HERE,
            env=env | {"OMP_NUM_THREADS": "1"},
            start_new_session=True,  # a hung run is killed with its workers, not only torchrun
        )
        try:
            output = proc.communicate(timeout=300)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0].decode()
        assert proc.returncode == 0, output[-6000:]
    return root


def result(root: Path, name: str, rank: int) -> dict:
    return json.loads((root / f"{name}.rank{rank}.json").read_text())


def weights(root: Path, name: str, rank: int | None = None) -> dict[str, torch.Tensor]:
    if rank is None:  # the checkpoint
        return load_model(root / name / "last")[0].state_dict()
    return safetensors.torch.load_file(str(root / f"{name}.rank{rank}.safetensors"))


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def single(tmp_path: Path, name: str, data, **kw) -> Path:
    """The same training as ddp_script's, in this one process."""
    cfg = ddp_script.config(tmp_path / name, **kw)
    train(cfg, tiny_mlp.model(0, dropout=0.0), data, val=ddp_script.val())
    return Path(cfg.out)


def pairs(epoch: int, pick) -> list[dict[str, torch.Tensor]]:
    b = tiny_mlp.epochs()(epoch)
    return [pick(b[i], b[i + 1]) for i in range(0, len(b), 2)]


def concatenated(epoch: int) -> list[dict[str, torch.Tensor]]:
    """What the two ranks see in one step, as one batch: global batches 2i (rank 0) and 2i + 1 (rank 1)."""
    return pairs(epoch, lambda a, b: {k: torch.cat([a[k], b[k]]) for k in a})


def differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_only_rank_0_writes(root):
    r0, r1 = result(root, "whole", 0), result(root, "whole", 1)
    assert r0["error"] is None and r1["error"] is None
    assert r0["saves"] == ["last", "best", "last", "best", "last"] and r1["saves"] == []  # last at 4, 8, 10
    rs = records(root / "whole")
    assert [r["step"] for r in rs if "loss" in r] == list(range(1, 11))  # once per step: one writer
    assert [r["step"] for r in rs if "val" in r] == [5, 10]
    assert r0["logs"] == len(rs) and r1["logs"] == 0
    assert sorted(p.name for p in (root / "whole").iterdir() if p.name != "tb") == ["best", "last", "metrics.jsonl"]
    s0, s1 = r0["summary"], r1["summary"]
    assert s0["world_size"] == 2 and s0["steps"] == 10 and s0["final_loss"] == rs[-2]["loss"]
    assert {k: v for k, v in s0.items() if k != "seconds"} == {k: v for k, v in s1.items() if k != "seconds"}
    meta = load_trainer(root / "whole" / "last")[1]
    assert meta["world_size"] == 2 and meta["step"] == 10 and (meta["epoch"], meta["batch_in_epoch"]) == (2, 4)


def test_ranks_hold_the_same_weights(root):
    for name in ("whole", "drop", "loader", "part"):
        w0, w1, saved = weights(root, name, 0), weights(root, name, 1), weights(root, name)
        assert all(torch.equal(w0[k], w1[k]) and torch.equal(w0[k], saved[k]) for k in w0), name


def test_two_processes_step_like_one_on_their_concatenated_batches(root, tmp_path):
    one = single(tmp_path, "one", concatenated, eval_every=ddp_script.EVAL_EVERY)
    ddp, ref = weights(root, "whole"), weights(tmp_path, "one")
    for k in ddp:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-6)
    ddp_rs, one_rs = records(root / "whole"), records(one)
    assert [r["step"] for r in ddp_rs] == [r["step"] for r in one_rs]
    for a, b in zip(ddp_rs, one_rs, strict=True):  # the logged loss is the mean over the ranks: the full batch's
        assert a.get("loss", 0.0) == pytest.approx(b.get("loss", 0.0), rel=1e-5)
        assert a.get("grad_norm", 0.0) == pytest.approx(b.get("grad_norm", 0.0), rel=1e-4)
        assert a.get("val", {}).get("loss", 0.0) == pytest.approx(b.get("val", {}).get("loss", 0.0), rel=1e-5)
    # without the gradient sync rank 0 would have trained on its own half: far outside the tolerance above
    single(tmp_path, "alone", lambda e: pairs(e, lambda a, b: a))
    alone = weights(tmp_path, "alone")
    assert differences(ddp, alone) > 1e-3


def test_a_split_dataloader_steps_like_one_with_twice_the_batch(root, tmp_path):
    x, y = tiny_mlp.dataset()
    g = torch.Generator().manual_seed(7)  # as tiny_mlp.loader(): the same permutation, drawn in the same order
    ds = torch.utils.data.TensorDataset(x, y)
    dl = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=g, collate_fn=tiny_mlp._collate)
    single(tmp_path, "one", dl, steps=6)
    ddp, ref = weights(root, "loader"), weights(tmp_path, "one")
    for k in ddp:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-6)


def test_an_iterator_is_split_like_a_list(root):
    def timeless(name: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records(root / name)]

    assert timeless("stream") == timeless("whole")  # every loss, norm and validation value, bit for bit
    a, b = weights(root, "stream"), weights(root, "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_in_two_processes_is_exact(root):
    part, whole = result(root, "part", 0), records(root / "drop")
    assert part["summary"]["resumed_from"] == str(root / "part" / "last") and part["saves"] == ["last", "last"]
    assert [(r["step"], r["loss"]) for r in records(root / "part")] == [(r["step"], r["loss"]) for r in whole]
    a, b = weights(root, "part"), weights(root, "drop")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = load_trainer(root / "part" / "last")[0], load_trainer(root / "drop" / "last")[0]
    assert "rank1.rng.torch" in ta  # every rank's RNG states, each restored on its own rank
    for k in (k for k in tb if k.startswith(("ema.", "optim.", "rng.", "rank1."))):
        assert torch.equal(ta[k], tb[k]), k


def test_a_nan_on_one_rank_stops_both(root):
    for rank in (0, 1):  # the NaN is in rank 1's batch of step 2
        assert (
            result(root, "nan", rank)["error"] == f"loss is nan at step 2; the last good checkpoint is {root}/nan/last"
        )
    assert load_trainer(root / "nan" / "last")[1]["step"] == 1


def test_a_stream_that_differs_between_ranks_is_refused(root):
    for rank in (0, 1):
        assert "different batches on different ranks" in result(root, "mismatch", rank)["error"]


def test_resume_needs_as_many_processes(root, tmp_path):
    shutil.copytree(root / "whole", tmp_path / "whole")
    with pytest.raises(GenbaError, match="trained by 2 processes, this run has 1"):
        train(ddp_script.config(tmp_path / "whole", resume=True), tiny_mlp.model(0, dropout=0.0), tiny_mlp.epochs())


def test_shard_takes_every_nth_batch_of_complete_groups():
    assert dist.shard(x := [1, 2], 0, 1) is x  # one process: the iterable itself
    for make in (lambda: list(range(7)), lambda: iter(range(7)), lambda: torch.arange(7)):
        parts = [[int(b) for b in dist.shard(make(), r, 2)] for r in (0, 1)]
        assert parts == [[0, 2, 4], [1, 3, 5]]  # 6, of an incomplete group, dropped on every rank


def test_shard_splits_a_dataloader_at_its_batch_sampler():
    dl = tiny_mlp.loader()
    whole = [b["x"] for _ in range(2) for b in dl]  # two epochs of one loader
    dls = [tiny_mlp.loader(), tiny_mlp.loader()]
    parts = [[b["x"] for _ in range(2) for b in dist.shard(dl, r, 2)] for r, dl in enumerate(dls)]
    assert len(dist.shard(tiny_mlp.loader(), 0, 2)) == 4 and len(parts[0]) == len(parts[1]) == 8
    merged = [b for pair in zip(*parts, strict=True) for b in pair]
    assert all(torch.equal(a, b) for a, b in zip(merged, whole, strict=True))
    sampler = torch.utils.data.DistributedSampler(dl.dataset, num_replicas=2, rank=0)
    with pytest.raises(GenbaError, match="without a DistributedSampler"):
        dist.shard(torch.utils.data.DataLoader(dl.dataset, sampler=sampler), 0, 2)
