"""Action clipping: joint limits and the per-step change, per robot."""

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.serving.safety import GENBA_UNITS, SO101_UNITS, robot_limits


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


def test_so101_limits_in_genba_units_hold_the_so101_to_its_own_range_once_converted_back():
    from genba.serving.robots import so101_units

    lim = robot_limits("so101", units=GENBA_UNITS)
    assert (lim.robot, lim.units) == ("so101", GENBA_UNITS)
    np.testing.assert_allclose(lim.upper, [np.pi] * 5 + [0.032], rtol=1e-6)
    np.testing.assert_allclose(lim.lower, [-np.pi] * 5 + [0.0], rtol=1e-6)
    np.testing.assert_allclose(lim.max_delta, [np.radians(8)] * 5 + [0.0064], rtol=1e-6)
    # float32 bounds rounded inwards: back in degrees they never pass +-180 or 0..100 (pi in float32 is past pi)
    back = so101_units().to_robot
    assert np.all(back(lim.upper) <= robot_limits("so101").upper)
    assert np.all(back(lim.lower) >= robot_limits("so101").lower)
    wild = np.array([[10.0, -10.0, 10.0, 0.0, 0.0, 1.0]] * 30, np.float32)
    current = np.array([0.0, 0.0, 3.0, 0.0, 0.0, 0.0], np.float32)
    out = lim.clip(wild, current)
    sent = np.array([back(r) for r in out])
    assert np.abs(sent[:, :5]).max() <= 180 and sent[:, 5].min() >= 0 and sent[:, 5].max() <= 100
    steps = np.abs(np.diff(np.vstack([back(current), sent]), axis=0))
    assert steps.max(axis=0) == pytest.approx([8, 8, 8, 0, 0, 20], abs=1e-4)  # at the per-step limit, never past
    assert sent[-1, :3] == pytest.approx([180, -180, 180], abs=1e-4) and sent[-1, 5] == pytest.approx(100)


def test_limits_convert_either_way_and_refuse_units_with_no_known_conversion():
    from genba.sim.model import JOINT_LIMITS

    deg = robot_limits("genba_arm", units=SO101_UNITS)
    np.testing.assert_allclose(deg.upper[:5], np.degrees(JOINT_LIMITS[:5, 1]), rtol=1e-5)
    assert deg.upper[5] == pytest.approx(100) and deg.max_delta[5] == pytest.approx(100)
    lim = robot_limits("so101")
    assert lim.in_units(SO101_UNITS) is lim  # the same units: nothing converted
    refusal = (
        r"^the so101 limits are in deg \(gripper: 0\.\.100\) and no conversion to m \(end effector\) is known "
        r"\(known: deg \(gripper: 0\.\.100\) <-> rad \(gripper: m\)\)$"
    )
    with pytest.raises(GenbaError, match=refusal):
        robot_limits("so101", units="m (end effector)")
