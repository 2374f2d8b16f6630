"""A user's own policy class served with one override and driven by the real openpi-client."""

import sys
from pathlib import Path

import numpy as np
from serving_harness import genba_serve, openpi

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
    with genba_serve("policy=user_policy:Homing", f"out={tmp_path / 's.json'}", cwd=tmp_path,
                     env={"PYTHONPATH": str(EXAMPLES)}) as served:  # fmt: skip
        assert "policy=Homing" in served.line and "observation.state float32[6]" in served.line
        result = openpi({"mode": "roundtrip", "host": "127.0.0.1", "port": served.port, "n": 3})
    assert served.returncode == 0
    assert result["metadata"]["action_spec"]["shape"] == [4, 6]
    local = Homing()
    for sent, got in zip(result["sent"], result["got"], strict=True):
        state = np.asarray(sent[keys.OBS_STATE], dtype=np.float32)
        expected = local.infer({keys.OBS_STATE: state})[keys.ACTIONS]
        # the server clips to the genba arm's limits (the default robot=genba_arm); the driver's random states lie
        # partly outside them
        expected = robot_limits("genba_arm").clip(expected, state)
        np.testing.assert_allclose(got["actions"], expected, rtol=1e-6)
