"""Shared world-model fixtures: a real genba dataset and a real (briefly) trained world-model run."""

import importlib.util
from pathlib import Path

import pytest

REACHER = Path(__file__).resolve().parents[2] / "examples" / "reacher_dataset.py"


@pytest.fixture(scope="session")
def tiny_worldmodel_run(tmp_path_factory) -> dict:
    """pick_place, 4 episodes at 64x64 with two cameras (genba collect), and `genba train-worldmodel preset=tiny`
    for 4 steps on it (3 training episodes, 1 validation episode). Built once per test process (about 10 s)."""
    from genba.datasets.collect import CollectConfig, run_collect
    from genba.worldmodel.train_command import TrainWorldModelConfig, run_train_worldmodel

    root = tmp_path_factory.mktemp("worldmodel")
    data = root / "pick_place"
    run_collect(CollectConfig(task="pick_place", episodes=4, image_size=64, lang="mixed", out=str(data)))
    cfg = TrainWorldModelConfig(
        data=str(data), out=str(root / "run"), steps=4, batch_size=2, val_fraction=0.25, progress=False
    )
    summary = run_train_worldmodel(cfg)
    return {"data": data, "run": root / "run", "summary": summary}


@pytest.fixture(scope="session")
def reacher_dataset(tmp_path_factory) -> Path:
    """examples/reacher_dataset.py (lerobot's writer, gymnasium's Reacher-v5): 3 episodes x 24 steps at 64x64."""
    spec = importlib.util.spec_from_file_location("reacher_dataset", REACHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("reacher") / "ds"
    return module.main(["--out", str(out), "--episodes", "3", "--steps", "24", "--image-size", "64"])
