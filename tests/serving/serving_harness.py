"""Shared set-up of the serving tests: the openpi-client venv (its own numpy<2), servers on free ports.

Imported by the tests as a plain module (pytest puts this folder on sys.path; tests/ is not a package)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from genba.policies.registry import policy_factory
from genba.serving.app import PolicyServer, ServerThread
from genba.serving.safety import robot_limits

REPO = Path(__file__).resolve().parents[2]
OPENPI_PYTHON = REPO / ".venv-openpi-client" / "bin" / "python"
DRIVER = Path(__file__).with_name("openpi_driver.py")
_FACTORY_ARGS = ("task", "cameras", "image_size", "horizon", "seed")

# A linear-policy server in its own process (for measurements of the server alone); prints its port when listening.
_SERVE = """
import asyncio, json, sys
from genba.policies.registry import policy_factory
from genba.serving.app import PolicyServer
options = json.loads(sys.argv[1])
server = PolicyServer(policy_factory("linear", horizon=2), port=0, limits=None, **options)
asyncio.run(server.serve(asyncio.Event(), ready=lambda port: print(port, flush=True)))
"""


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
    """A server in a thread of this process: policy options (task, cameras, ...) go to the policy, the rest to the
    PolicyServer; action limits are the genba arm's unless `limits=` says otherwise."""
    factory_args = {k: kwargs.pop(k) for k in _FACTORY_ARGS if k in kwargs}
    limits = kwargs.pop("limits") if "limits" in kwargs else robot_limits("genba_arm")
    return ServerThread(PolicyServer(policy_factory(policy, **factory_args), port=0, limits=limits, **kwargs))


def spawn(**options) -> tuple[subprocess.Popen, str]:
    """A linear-policy (horizon 2) server in a subprocess, PolicyServer `options` as given; (process, ws:// url)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, json.dumps(options)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        pytest.fail(f"the server subprocess did not start (exit {proc.wait(timeout=30)})")
    return proc, f"ws://127.0.0.1:{int(line)}"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak (VmHWM), in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _lines(path: Path) -> list[str]:
    """The complete lines written to `path` so far."""
    text = path.read_text()
    return text.splitlines(keepends=True)[: text.count("\n")]


@dataclass
class Served:
    """A `genba serve` process: its "listening on" line and port; after the block, its exit code and output."""

    proc: subprocess.Popen
    line: str
    port: int
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


@contextlib.contextmanager
def genba_serve(*overrides: str, cwd: Path = REPO, env: dict | None = None) -> Iterator[Served]:
    """`genba serve port=0 <overrides>` as a user runs it (no API key from the environment), stopped with SIGTERM
    at the end of the block, as Ctrl-C or a service manager would."""
    env = {**os.environ, "GENBA_API_KEY": "", **(env or {})}
    cmd = [sys.executable, "-m", "genba", "serve", "port=0", *overrides]
    # Output goes to files, not pipes: a pipe nobody reads while the block runs would stall a chatty server.
    logs = Path(tempfile.mkdtemp(prefix="genba-serve-"))
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (line := next((x for x in _lines(logs / "stderr") if "listening on" in x), "")):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"genba serve did not start listening: {(logs / 'stderr').read_text()[-2000:]}")
            time.sleep(0.05)
        served = Served(proc, line, int(re.search(r"ws://127\.0\.0\.1:(\d+)", line).group(1)))
        yield served
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        served.stdout, served.stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
        served.returncode = proc.returncode
    finally:
        proc.kill()
        proc.wait(timeout=60)
        shutil.rmtree(logs, ignore_errors=True)
