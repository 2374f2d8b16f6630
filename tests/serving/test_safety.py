"""Action clipping: joint limits and the per-step change, per robot."""

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.serving.safety import robot_limits


def test_genba_arm_limits_are_the_envs():
    import genba.sim as sim

    env = sim.make("reach", cameras=[])
    try:
        lim = robot_limits("genba_arm")
        np.testing.assert_allclose(np.stack([lim.lower, lim.upper], 1), env.unwrapped.joint_limits, atol=1e-6)
        assert lim.names == tuple(env.unwrapped.joint_names) == keys.JOINTS
    finally:
        env.close()


def test_clip_to_limits_and_step_change():
    lim = robot_limits("genba_arm")
    d = lim.max_delta
    current = np.zeros(6, np.float32)
    row = [1.9, -1.7, 0.1, 0.0, 0.0, 1.0]  # pan and lift farther than one step's change, gripper past its limit
    out = lim.clip(np.array([row, row], np.float32), current)  # (2, 6)
    np.testing.assert_allclose(out[0], [d[0], -d[1], 0.1, 0.0, 0.0, lim.upper[5]], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1.9, -1.7, 0.1, 0.0, 0.0, lim.upper[5]], rtol=1e-6)
    assert np.all(np.abs(np.diff(np.vstack([current, out]), axis=0)) <= d + 1e-7)
    # Without a measured position only the joint limits apply.
    far = np.array([[3.0, -3.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(lim.clip(far, None)[0, :2], [lim.upper[0], lim.lower[1]])


def test_clip_refuses_wrong_width_and_unknown_robot():
    with pytest.raises(ValueError, match=r"expected \(H, 6\)"):
        robot_limits("so101").clip(np.zeros((2, 5)), None)
    with pytest.raises(GenbaError, match="valid: genba_arm, so101"):
        robot_limits("ur5")


def test_so101_units_are_lerobots_degrees():
    lim = robot_limits("so101")
    out = lim.clip(np.array([[90.0, 0, 0, 0, 0, 150.0]], np.float32), np.zeros(6, np.float32))
    assert out[0, 0] == lim.max_delta[0] and out[0, 5] == lim.max_delta[5] <= 100
