"""A user's own policy class served with one override and driven by the real openpi-client."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from serving_harness import openpi

from genba import keys
from genba.serving.safety import robot_limits

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def test_genba_serve_policy_module_class_through_openpi_client(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        from user_policy import Homing
    finally:
        sys.path.remove(str(EXAMPLES))
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES), "GENBA_API_KEY": ""}
    cmd = [sys.executable, "-m", "genba", "serve", "policy=user_policy:Homing", "port=0", f"out={tmp_path / 's.json'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
            assert line, f"server exited before listening: {proc.stderr.read()[-2000:]}"
        assert "policy=Homing" in line and "observation.state float32[6]" in line
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)", line).group(1))
        result = openpi({"mode": "roundtrip", "host": "127.0.0.1", "port": port, "n": 3})
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert result["metadata"]["action_spec"]["shape"] == [4, 6]
    local = Homing()
    for sent, got in zip(result["sent"], result["got"], strict=True):
        state = np.asarray(sent[keys.OBS_STATE], dtype=np.float32)
        expected = local.infer({keys.OBS_STATE: state})[keys.ACTIONS]
        # the server clips to the genba arm's limits (the default robot=genba_arm); the driver's random states lie
        # partly outside them
        expected = robot_limits("genba_arm").clip(expected, state)
        np.testing.assert_allclose(got["actions"], expected, rtol=1e-6)
