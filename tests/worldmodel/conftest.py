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
