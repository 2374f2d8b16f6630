"""World-model fixtures: a dataset lerobot's writer made from gymnasium's Reacher (the trained run is in
tests/conftest.py: the policy tests start a VLA from it)."""

import importlib.util
from pathlib import Path

import pytest

REACHER = Path(__file__).resolve().parents[2] / "examples" / "reacher_dataset.py"


@pytest.fixture(scope="session")
def reacher_dataset(tmp_path_factory) -> Path:
    """examples/reacher_dataset.py (lerobot's writer, gymnasium's Reacher-v5): 3 episodes x 24 steps at 64x64."""
    spec = importlib.util.spec_from_file_location("reacher_dataset", REACHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("reacher") / "ds"
    return module.main(["--out", str(out), "--episodes", "3", "--steps", "24", "--image-size", "64"])


@pytest.fixture(scope="session")
def reach_wm_run(tmp_path_factory) -> dict:
    """reach with failures (genba collect noise=0.3 keep_failed=true: 6 noisy expert episodes at 64x64, one of
    them successful, seeds 0..5) and `genba train-worldmodel preset=tiny success=true` for 3 steps on 4 of them:
    a real run with a success head. Built once per test process (about 30 s)."""
    from genba.datasets.collect import CollectConfig, run_collect
    from genba.worldmodel.train_command import TrainWorldModelConfig, run_train_worldmodel

    root = tmp_path_factory.mktemp("wm-reach")
    data = root / "reach"
    run_collect(CollectConfig(task="reach", episodes=6, image_size=64, noise=0.3, keep_failed=True, out=str(data)))
    cfg = TrainWorldModelConfig(data=str(data), out=str(root / "run"), steps=3, batch_size=2, val_fraction=0.34,
                                success=True, progress=False)  # fmt: skip
    return {"data": data, "run": root / "run", "summary": run_train_worldmodel(cfg), "task": "reach"}


@pytest.fixture(scope="session")
def headless_wm_run(reach_wm_run, tmp_path_factory) -> Path:
    """The reach run's model as a run trained before the success head existed: success_head false, its weights
    saved in genba's checkpoint format (what an older run folder holds)."""
    import dataclasses

    from genba.train.checkpoint import load_json, load_model, save_checkpoint
    from genba.worldmodel.model import WorldModel

    trained, config = load_model(reach_wm_run["run"] / "last", kind="worldmodel")
    old = WorldModel(dataclasses.replace(config, success_head=False))
    old.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.startswith("success_out.")})
    run = tmp_path_factory.mktemp("wm-headless") / "run"
    save_checkpoint(run / "last", old, stats=load_json(reach_wm_run["run"] / "last", "stats.json"))
    return run
