"""`genba serve policy=lerobot:<checkpoint>`: a LeRobot checkpoint served to the unmodified openpi-client."""

import numpy as np
from openpi_driver import make_obs
from serving_harness import genba_serve, openpi

from genba import keys
from genba.policies.lerobot import LeRobotPolicy


def driver_observations(spec: dict, n: int, seed: int = 0) -> list[dict]:
    """The observations openpi_driver.py's roundtrip sends: its own make_obs, same generator, same order."""
    rng = np.random.default_rng(seed)
    return [make_obs(spec, rng) for _ in range(n)]


def test_genba_serve_a_lerobot_checkpoint_through_openpi_client(tiny_lerobot_run, tmp_path):
    ckpt = tiny_lerobot_run["checkpoint"]
    # CPU on both sides (device=auto would pick a GPU where there is one): the comparison below is then exact.
    # robot=none: no clipping to the genba arm's limits, so the served actions are the policy's own.
    env = {"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    overrides = (f"policy=lerobot:{ckpt}", "robot=none", f"out={tmp_path / 's.json'}")
    with genba_serve(*overrides, cwd=tmp_path, env=env) as served:
        assert "policy=lerobot-act" in served.line and "observation.images.front uint8[64x64x3]" in served.line
        result = openpi({"mode": "roundtrip", "host": "127.0.0.1", "port": served.port, "n": 3}, timeout=300)
    assert served.returncode == 0
    meta = result["metadata"]
    assert meta["action_spec"]["shape"] == [10, 6]
    assert meta["input_spec"][keys.image_key("wrist")] == {"dtype": "uint8", "shape": [64, 64, 3], "required": True}

    local = LeRobotPolicy(ckpt, device="cpu")
    sent = driver_observations(meta["input_spec"], 3)
    for obs, echoed, got in zip(sent, result["sent"], result["got"], strict=True):
        np.testing.assert_array_equal(obs[keys.OBS_STATE], np.asarray(echoed[keys.OBS_STATE], np.float32))
        expected = local.infer(local.input_spec.validate(obs))[keys.ACTIONS]
        assert got["dtype"] == "float32"
        np.testing.assert_allclose(np.asarray(got["actions"]), expected, atol=1e-5)
