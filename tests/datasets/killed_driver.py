"""A sharded `genba collect` driver SIGKILLed mid-run in a subprocess, and what its rerun must redo: shared by the
local-shards and Ray tests."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genba.datasets.commit import LOCK_FILE, read_commit
from genba.datasets.distributed import PLAN_FILE, shard_dir, shard_done, shard_root


def start_cli(options: dict, out: Path) -> subprocess.Popen:
    """`python -m genba collect` with `options` (CollectConfig fields) in its own session, its output in
    `<out>.cli.log`: a pipe nobody reads while the test waits fills (its progress bar writes ~110 bytes/s) and then
    blocks the driver."""
    env = {**os.environ, "SVT_LOG": "1"}
    env.pop("GENBA_KILL_AT", None)
    env.pop("GENBA_FAIL_AT", None)
    if env.pop("PYTHONDONTWRITEBYTECODE", None):  # else each child recompiles torch from source (~20 s)
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "genba-test-pycache"))
    args = [f"{k}={json.dumps(v, separators=(',', ':')).replace(chr(34), '')}" for k, v in options.items()]
    cmd = [sys.executable, "-m", "genba", "collect", *args, f"out={out}"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(cli_log(out), "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def cli_log(out: Path) -> Path:
    return out.with_name(out.name + ".cli.log")


def shard_commits(out: Path) -> dict[tuple[int, int], dict]:
    commits = {}
    for root in sorted(shard_dir(out).glob("attempts-*")):
        _, a, b = root.name.split("-")
        try:
            commit = read_commit(root)
        except Exception:  # a commit record being replaced right now
            continue
        if commit is not None:
            commits[(int(a), int(b))] = commit
    return commits


def unlocked(root: Path) -> bool:
    """True when no process holds the shard's writer lock (a killed driver's shard writers have stopped)."""
    path = root / LOCK_FILE
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def kill_driver_mid_run(options: dict, out: Path) -> tuple[dict, set]:
    """Start the collect command, SIGKILL the driver (only it) once a shard has committed an episode, wait until no
    shard writer is left. Returns (attempts committed per shard range, the ranges done: committed and checkpointed)."""
    proc = start_cli(options, out)
    while proc.poll() is None and not any(c["episodes"] for c in shard_commits(out).values()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, cli_log(out).read_text(errors="replace")[-2000:]
    roots = list(shard_dir(out).glob("attempts-*"))
    deadline = time.time() + 60
    while not all(unlocked(r) for r in roots) and time.time() < deadline:
        time.sleep(0.1)
    assert all(unlocked(r) for r in roots), "a shard writer outlived its killed driver"
    assert not out.exists() and (shard_dir(out) / PLAN_FILE).is_file()  # killed mid-run, before the merge
    commits = shard_commits(out)
    assert sum(c["episodes"] for c in commits.values()) >= 1
    before = {r: c["attempts"] for r, c in commits.items()}
    return before, {r for r in before if shard_done(shard_root(out, *r), *r)}


def assert_redid_only_missing(summary: dict, before: dict, done: set) -> None:
    """Shards done before the kill are reused; the others resume after their last committed attempt (one killed
    between its last commit and its checkpoint only replays its log)."""
    assert summary["complete"], summary["failed_shards"]
    for s in summary["shards"]:
        r = (s["start"], s["stop"])
        if r in done:
            assert s["status"] == "reused", s
        else:
            assert s["status"] == "ran" and s["resumed_from"] == before.get(r, 0), (s, before)
