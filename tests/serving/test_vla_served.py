"""`genba serve policy=<VLA run>`: a trained VLA served to the unmodified openpi-client, and driving the sim-backed
SO-101 follower (lerobot's Robot interface) through the robot client, with the SO-101's limits converted."""

import numpy as np
from openpi_driver import make_obs
from serving_harness import genba_serve, openpi

from genba import keys
from genba.policies.vla_policy import VLAPolicy
from genba.serving.lerobot_sim import SimSO101Config, SimSO101Follower
from genba.serving.remote import RemotePolicy
from genba.serving.robot_client import RobotClient
from genba.serving.robots import LeRobotArm, so101_units
from genba.serving.safety import robot_limits

CPU = {"CUDA_VISIBLE_DEVICES": ""}  # the VLA loads on the CPU anyway; the same device as the local one below
CAMERAS = ("front", "wrist")


def test_genba_serve_a_vla_run_through_openpi_client(tiny_vla_run, tmp_path):
    run = tiny_vla_run["run"]
    # robot=none: no clipping, so the served actions are the policy's own.
    with genba_serve(f"policy={run}", "robot=none", f"out={tmp_path / 's.json'}", cwd=tmp_path, env=CPU) as served:
        assert f"policy=vla:{run.name}" in served.line and "observation.images.wrist uint8[64x64x3]" in served.line
        cmd = {"mode": "roundtrip", "host": "127.0.0.1", "port": served.port, "n": 3}
        first, second = openpi(cmd, timeout=300), openpi(cmd, timeout=300)  # two connections, the same observations
    assert served.returncode == 0
    meta = first["metadata"]
    assert meta["action_spec"]["shape"] == [8, 6] and meta["action_spec"]["units"] == "rad (gripper: m)"
    image = {"dtype": "uint8", "shape": [64, 64, 3], "required": True}
    assert {c: meta["input_spec"][keys.image_key(c)] for c in CAMERAS} == {c: image for c in CAMERAS}
    assert meta["input_spec"][keys.OBS_STATE] == {"dtype": "float32", "shape": [6], "required": True}
    assert meta["input_spec"][keys.TASK]["dtype"] == "str" and meta["input_spec"][keys.TASK]["required"]
    assert len(meta["input_spec"]) == 4 and meta["per_connection"] is False  # it batches: one shared instance

    # The server holds one instance (the VLA has infer_batch), built (so reseeded) once at start and never reset for
    # a client: its flow sampler's generator runs on across requests and connections. A fresh local instance asked
    # the same observations in the same order draws the same noise, so the comparison is exact (same CPU, batch 1).
    local = VLAPolicy(str(run))
    rng = np.random.default_rng(0)  # the driver's observations: its own make_obs, same generator, same order
    sent = [make_obs(meta["input_spec"], rng) for _ in range(3)]
    for result in (first, second):
        for obs, echoed, got in zip(sent, result["sent"], result["got"], strict=True):
            np.testing.assert_array_equal(obs[keys.OBS_STATE], np.asarray(echoed[keys.OBS_STATE], np.float32))
            expected = local.infer(local.input_spec.validate(obs))[keys.ACTIONS]  # (8, 6)
            assert got["dtype"] == "float32"
            np.testing.assert_allclose(np.asarray(got["actions"]), expected, atol=1e-5)
    # the second connection got new noise (not a reset), the same observations notwithstanding
    assert not np.allclose(first["got"][0]["actions"], second["got"][0]["actions"], atol=1e-4)


class RecordedSO101(SimSO101Follower):
    """The sim-backed follower, keeping the sim arm's joint state (radians, gripper metres) at each observation."""

    def __init__(self, config: SimSO101Config) -> None:
        super().__init__(config)
        self.joint_states: list[np.ndarray] = []

    def get_observation(self) -> dict:
        self.joint_states.append(np.array(self._obs[keys.AGENT_POS]))
        return super().get_observation()


def test_a_served_vla_drives_the_sim_so101_through_the_robot_client(tiny_vla_run, tmp_path):
    run, steps = tiny_vla_run["run"], 20
    robot = RecordedSO101(SimSO101Config(task=tiny_vla_run["task"], camera_names=list(CAMERAS), image_size=64,
                                         calibration_dir=tmp_path))  # fmt: skip
    robot.connect()
    with genba_serve(f"policy={run}", "robot=so101", f"out={tmp_path / 's.json'}", cwd=tmp_path, env=CPU) as served:
        assert "limits=so101 in rad (gripper: m)" in served.line  # the SO-101's limits, converted: no refusal
        policy = RemotePolicy(f"ws://127.0.0.1:{served.port}", timeout_s=60)
        assert policy.metadata["action_limits"]["robot"] == "so101"
        limits = robot_limits("so101", units=policy.action_spec.units)  # the client clips in the policy's units too
        arm = LeRobotArm(robot, fps=policy.action_spec.fps, units=so101_units(), cameras={c: c for c in CAMERAS})
        client = RobotClient(arm, policy, limits=limits, realtime=False)
        robot.reset(seed=7)
        episode = client.run_episode(max_steps=steps, record=True)
        client.close()
        policy.close()
    robot.disconnect()
    assert served.returncode == 0
    assert episode.steps == steps and episode.errors == 0 and episode.requests >= 3, episode
    # The instruction is the sim episode's own, and the cameras are the ones the VLA reads.
    assert episode.task == robot.env.unwrapped.task_description != ""
    assert episode.frames[keys.image_key("wrist")].shape == (steps, 64, 64, 3)
    # Observations went through the conversion: the state sent to the policy is the sim arm's, in radians.
    state = episode.frames[keys.OBS_STATE]  # (T, 6)
    np.testing.assert_allclose(state, np.stack(robot.joint_states), atol=1e-6)
    # Actions reached the arm in SO-101 units (degrees, gripper 0..100), within its range and per-step change.
    sent = np.array([[a[f"{j}.pos"] for j in keys.JOINTS] for a in arm.sent])  # (T, 6)
    np.testing.assert_allclose(sent, [so101_units().to_robot(a) for a in episode.frames[keys.ACTION]], atol=1e-4)
    assert np.abs(sent[:, :5]).max() <= 180 and sent[:, 5].min() >= 0 and sent[:, 5].max() <= 100
    change = np.abs(sent - np.array([so101_units().to_robot(s) for s in state]))  # from where the arm was
    assert np.all(change <= np.array([8.0] * 5 + [20.0]) + 1e-3), change.max(axis=0)
    assert change[:, :5].max() > 8.0 - 1e-3  # the barely trained VLA asks for more: the SO-101's limits bind
    assert np.abs(np.degrees(state[-1] - state[0])[:5]).max() > 1.0  # and the arm moved
