from pathlib import Path

import pytest
from foreign_dataset import make_lerobot_dataset


@pytest.fixture(scope="session")
def foreign(tmp_path_factory) -> Path:
    """The lerobot-written dataset of foreign_dataset.py, built once per process; tests that change it copy it."""
    return make_lerobot_dataset(tmp_path_factory.mktemp("foreign") / "ds")
