"""Suite-wide set-up that must happen before any test module is collected."""

import os

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
    run_baseline(BaselineConfig(algo="act", data=str(data), out=str(root / "act"), steps=2, batch_size=2))
    return {"data": data, "run": root / "act", "checkpoint": root / "act" / CHECKPOINT, "task": "reach"}
