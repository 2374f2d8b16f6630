"""Shared set-up of the serving tests: the openpi-client venv (its own numpy<2), servers on free ports.

Imported by the tests as a plain module (pytest puts this folder on sys.path; tests/ is not a package)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from genba.serving.app import PolicyServer, ServerThread
from genba.serving.policies import policy_factory
from genba.serving.safety import robot_limits

REPO = Path(__file__).resolve().parents[2]
OPENPI_PYTHON = REPO / ".venv-openpi-client" / "bin" / "python"
DRIVER = Path(__file__).with_name("openpi_driver.py")


def openpi(command: dict, timeout: float = 120.0) -> dict:
    """Run one command of openpi_driver.py with the real openpi-client and return its JSON result."""
    if not OPENPI_PYTHON.exists():
        pytest.fail(
            f"{OPENPI_PYTHON} is missing: run `bash scripts/setup_openpi_client.sh` (it installs the unmodified "
            "openpi-client==0.1.2 from PyPI in its own venv, since it pins numpy<2)"
        )
    proc = subprocess.run(
        [str(OPENPI_PYTHON), str(DRIVER), json.dumps(command)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"openpi driver failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start(policy: str = "linear", **kwargs) -> ServerThread:
    factory_args = {k: kwargs.pop(k) for k in ("task", "cameras", "image_size", "horizon", "max_batch") if k in kwargs}
    limits = kwargs.pop("limits", robot_limits("genba_arm"))
    return ServerThread(PolicyServer(policy_factory(policy, **factory_args), port=0, limits=limits, **kwargs))
