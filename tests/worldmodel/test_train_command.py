"""`genba train-worldmodel` end to end on real datasets: genba's two-camera pick_place, a Reacher dataset written by
lerobot's own writer (one camera, other sizes and fps), bad input as one line, and exact resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genba import keys
from genba.datasets.split import read_split
from genba.datasets.stats import compute_stats
from genba.errors import GenbaError
from genba.train.checkpoint import load_json, load_model
from genba.worldmodel.data import clip_dataset
from genba.worldmodel.train_command import TrainWorldModelConfig, run_train_worldmodel

pytestmark = pytest.mark.xdist_group("worldmodel")  # one process builds the session fixtures once


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_holds_checkpoints_split_stats_and_summary(tiny_worldmodel_run):
    run, summary = tiny_worldmodel_run["run"], tiny_worldmodel_run["summary"]
    model, config = load_model(run / "last", kind="worldmodel")
    assert config.cameras == ["front", "wrist"] and (config.state_dim, config.action_dim) == (6, 6)
    split = read_split(run / "split.json")
    assert (len(split["train"]), len(split["val"])) == (3, 1)
    assert load_json(run / "last", "split.json")["val"] == split["val"]
    train_ds = clip_dataset(str(tiny_worldmodel_run["data"]), 8, episodes=split["train"], progress=False)
    want = compute_stats(train_ds, images=False)[keys.OBS_STATE]["mean"]  # training episodes only
    assert load_json(run / "last", "stats.json")[keys.OBS_STATE]["mean"] == want
    torch.testing.assert_close(model.state_mean, torch.tensor(want, dtype=torch.float32))
    steps = [r["step"] for r in metrics(run) if "loss" in r]
    assert steps == [1, 2, 3, 4] and any("val" in r for r in metrics(run))
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved["params"] == sum(p.numel() for p in model.parameters()) == summary["params"]
    assert saved["train_seconds"] > 0 and saved["data"] == str(Path(tiny_worldmodel_run["data"]).resolve())
    # best/ is chosen by the validation loss of the frames and joints, not the total with the contrastive term
    vals = [r["val"] for r in metrics(run) if "val" in r]
    assert all(v["prediction"] < v["loss"] for v in vals)
    assert saved["best_val_loss"] == pytest.approx(min(v["prediction"] for v in vals))


def test_trains_on_a_dataset_genba_did_not_write(reacher_dataset, tmp_path):
    """One camera stored as `observation.image`, a 10-value state, 2 actions, 50 fps, written by lerobot."""
    cfg = TrainWorldModelConfig(data=str(reacher_dataset), out=str(tmp_path / "run"), steps=2, batch_size=2,
                                val_fraction=0.34, progress=False)  # fmt: skip
    run_train_worldmodel(cfg)
    model, config = load_model(tmp_path / "run" / "last", kind="worldmodel")
    assert config.cameras == ["image"] and (config.state_dim, config.action_dim) == (10, 2)
    ds = clip_dataset(str(reacher_dataset), 6, image_size=64, progress=False)
    b = ds[0]
    out = model.rollout(
        {"image": b[keys.image_key("image")][None].expand(1, 1, 3, 64, 64).contiguous()},
        b[keys.OBS_STATE][None],
        b[keys.ACTION][None, :5],
        [b[keys.TASK]],
    )
    assert out["images"]["image"].shape == (1, 5, 3, 64, 64) and out["state"].shape == (1, 5, 10)


def _lerobot_dataset(root: Path, camera: bool, action: bool) -> Path:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {keys.OBS_STATE: {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}}
    if camera:
        features[keys.image_key("top")] = {
            "dtype": "video",
            "shape": (32, 32, 3),
            "names": ["height", "width", "channels"],
        }
    if action:
        features[keys.ACTION] = {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}
    ds = LeRobotDataset.create("test/bad", fps=10, features=features, root=root, use_videos=True)
    for _ in range(2):
        for f in range(12):
            frame = {keys.OBS_STATE: np.full(2, f, np.float32), "task": "reach"}
            if camera:
                frame[keys.image_key("top")] = np.full((32, 32, 3), f * 10, np.uint8)
            if action:
                frame[keys.ACTION] = np.zeros(2, np.float32)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root


@pytest.mark.parametrize(
    ("camera", "action", "message"),
    [(True, False, "feature 'action' is not in"), (False, True, "no camera")],
)
def test_a_dataset_without_actions_or_cameras_is_one_line(tmp_path, camera, action, message):
    data = _lerobot_dataset(tmp_path / "ds", camera, action)
    cfg = TrainWorldModelConfig(data=str(data), out=str(tmp_path / "run"), steps=1, batch_size=1, progress=False)
    with pytest.raises(GenbaError, match=message) as e:
        run_train_worldmodel(cfg)
    assert "\n" not in str(e.value)


def test_bad_options_are_one_line(tiny_worldmodel_run, tmp_path):
    with pytest.raises(GenbaError, match="preset='huge'"):
        TrainWorldModelConfig(data="x", preset="huge")
    with pytest.raises(GenbaError, match="data= is required"):
        TrainWorldModelConfig()
    cfg = TrainWorldModelConfig(data=str(tiny_worldmodel_run["data"]), out=str(tiny_worldmodel_run["run"]), steps=1)
    with pytest.raises(GenbaError, match="pass resume=true"):
        run_train_worldmodel(cfg)  # never trains over a finished run


def _genba(*args: str) -> list[str]:
    return [sys.executable, "-m", "genba", "train-worldmodel", *args]


def test_killing_a_run_and_resuming_gives_the_losses_of_an_uninterrupted_run(tiny_worldmodel_run, tmp_path):
    common = [f"data={tiny_worldmodel_run['data']}", "steps=10", "batch_size=2", "save_every=2", "progress=false",
              "threads=1", "val_fraction=0.25"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_genba(*common, f"out={whole}"), check=True, env=env, capture_output=True, timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        _genba(*common, f"out={cut}"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (cut / "last" / "trainer.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((cut / "last" / "trainer.json").read_text())["step"]
    assert 0 < killed_at < 10
    subprocess.run(_genba(*common, f"out={cut}", "resume=true"), check=True, env=env, capture_output=True, timeout=600)
    got = [(r["step"], r["loss"]) for r in metrics(cut) if "loss" in r]
    want = [(r["step"], r["loss"]) for r in metrics(whole) if "loss" in r]
    assert [s for s, _ in got] == list(range(1, 11))
    assert got == want  # bit-identical on CPU, the killed part included
    a, _ = load_model(cut / "last", kind="worldmodel")
    b, _ = load_model(whole / "last", kind="worldmodel")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_a_checkpoint_loads_by_kind_without_importing_the_model_first(tiny_worldmodel_run):
    """config.json names the model's module; genba's own are imported on load (a fresh interpreter shows it)."""
    code = (
        "import sys; from genba.train.checkpoint import load_model; "
        f"m, c = load_model({str(tiny_worldmodel_run['run'] / 'last')!r}, kind='worldmodel'); "
        "print(type(m).__name__, 'genba.worldmodel.model' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["WorldModel", "True"]


def test_torchrun_runs_the_same_command_on_two_processes(tiny_worldmodel_run, tmp_path):
    """DDP with gloo on two CPU processes: one optimizer step takes a batch from each process."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "genba", "train-worldmodel",
           f"data={tiny_worldmodel_run['data']}", f"out={out}", "steps=2", "batch_size=1", "progress=false",
           "val_fraction=0.25"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(out / "summary.json")  # printed once, by rank 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert [r["step"] for r in metrics(out) if "loss" in r] == [1, 2]
    assert json.loads((out / "last" / "trainer.json").read_text())["world_size"] == 2
    load_model(out / "last", kind="worldmodel")
