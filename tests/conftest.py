"""Suite-wide set-up that must happen before any test module is collected."""

import os

# Two xdist workers share the cores: one torch/OpenMP thread each (and in the processes they start) keeps the machine
# from being oversubscribed. On 2 cores a training run beside another busy process ran 12x slower at torch's default
# of two threads (20 s/step against 1.6 s). Set before torch is imported; a caller's own value is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

# The Triton kernels run in Triton's interpreter on CPU. Triton reads this when a kernel is decorated, so it must be
# set before any module that defines kernels is imported, whichever test folder xdist happens to collect first.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_lerobot_run(tmp_path_factory) -> dict:
    """A genba reach dataset (4 episodes, 64x64, two cameras) and LeRobot's ACT trained on it by lerobot-train for
    2 steps (`genba baseline`): a real LeRobot checkpoint, with its processors, for the adapter and plugin tests.
    Built once per test process (about 15 s)."""
    from genba.datasets.collect import CollectConfig, run_collect
    from genba.policies.baseline import CHECKPOINT, BaselineConfig, run_baseline

    root = tmp_path_factory.mktemp("lerobot-run")
    data = root / "reach"
    run_collect(CollectConfig(task="reach", episodes=4, image_size=64, out=str(data)))
    # one thread (two xdist workers share the cores) and a time limit: a hung lerobot-train fails the fixture with one
    # line instead of holding CI until its own limit (one run at de2a038 spun for 30+ minutes here; 15 s is usual)
    cfg = BaselineConfig(algo="act", data=str(data), out=str(root / "act"), steps=2, batch_size=2, threads=1,
                         timeout_s=600)  # fmt: skip
    run_baseline(cfg)
    return {"data": data, "run": root / "act", "checkpoint": root / "act" / CHECKPOINT, "task": "reach"}


@pytest.fixture(scope="session")
def tiny_vla_run(tmp_path_factory) -> dict:
    """A genba reach dataset (6 episodes, 64x64, two cameras, English and Japanese) and `genba train-policy
    preset=tiny` for 3 steps on it (5 training episodes, 1 validation episode): a real VLA run folder.
    Built once per test process (about 15 s)."""
    from genba.datasets.collect import CollectConfig, run_collect
    from genba.policies.train_command import TrainPolicyConfig, run_train_policy

    root = tmp_path_factory.mktemp("vla-run")
    data = root / "reach"
    run_collect(CollectConfig(task="reach", episodes=6, image_size=64, lang="mixed", out=str(data)))
    cfg = TrainPolicyConfig(data=str(data), out=str(root / "vla"), steps=3, batch_size=4, val_fraction=0.2,
                            progress=False)  # fmt: skip
    return {"data": data, "run": root / "vla", "summary": run_train_policy(cfg), "task": "reach"}


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
