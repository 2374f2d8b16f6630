"""The robot client: chunk broker, watchdog, and robots driven end to end through `genba serve`, through the same
episode loop as simulation."""

from __future__ import annotations

import time

import numpy as np
import pytest
from serving_harness import start

import genba.sim as sim
from genba import keys
from genba.policies.broker import ChunkBroker
from genba.policies.rollout import rollout
from genba.policies.scripted import ScriptedPolicy
from genba.policies.simple import LinearPolicy
from genba.serving.app import PolicyServer, ServerThread
from genba.serving.remote import RemotePolicy
from genba.serving.robot_client import RobotClient
from genba.serving.robots import LeRobotArm, so101_units
from genba.serving.safety import robot_limits
from genba.sim.arm import SimArm


def test_broker_drops_stale_rows_and_blends_the_overlap():
    calls = []

    def infer(obs):
        calls.append(obs["step"])
        n = len(calls)
        return {keys.ACTIONS: np.repeat(10.0 * n + np.arange(4.0)[:, None], 6, axis=1)}  # rows n0, n1, n2, n3

    broker = ChunkBroker(infer, refill_at=2, blend=2, background=True)
    got = []
    for step in range(7):
        action = broker.action(step, {"step": step}, deadline=time.perf_counter() + 5)
        got.append(None if action is None else float(action[0]))
        broker.settle(5)
    # chunk 1 asked at step 0 (waited for); chunk 2 asked at step 2 with 2 rows left, adopted at step 3 (its row 1),
    # blended half-half with chunk 1's last row; chunk 3 asked at step 4 (2 rows of chunk 2 left), adopted at 5;
    # chunk 4 asked at step 6.
    assert calls == [0, 2, 4, 6]
    assert got == [10, 11, 12, 0.5 * 13 + 0.5 * 21, 22, 0.5 * 23 + 0.5 * 31, 32]


def _direct(task: str, seed: int) -> tuple[bool, np.ndarray]:
    """The expert in simulation through the one loop (itself checked bit for bit against the bare expert in
    tests/policies/test_rollout.py)."""
    env = sim.make(task, cameras=[])
    episode = rollout(env, ScriptedPolicy(task), seed, record=True)
    env.close()
    return episode.success, episode.frames[keys.ACTION]


@pytest.mark.parametrize("task", ["reach", "push", "pick_place", "stack"])
def test_sim_arm_through_the_server_matches_the_expert_run_directly(task):
    seeds = range(4)
    direct = [_direct(task, s) for s in seeds]
    with start("scripted", task=task) as server:
        policy = RemotePolicy(server.url)
        arm = SimArm(sim.make(task, cameras=[]))
        client = RobotClient(arm, policy, limits=robot_limits("genba_arm"), realtime=False)
        served = []
        for seed in seeds:
            arm.reset(seed)
            episode = client.run_episode(record=True)
            served.append((episode, episode.frames[keys.ACTION]))
        policy.close()
        client.close()
    assert [e.success for e, _ in served] == [ok for ok, _ in direct]
    for (episode, actions), (_, expected) in zip(served, direct, strict=True):
        assert episode.holds == 0 and episode.errors == 0
        np.testing.assert_array_equal(actions, expected)  # same observations in, same actions out, bit for bit
    assert sum(e.success for e, _ in served) >= 3  # the experts succeed: the comparison is not all failures


def test_chunks_run_the_same_in_simulation_and_through_the_robot_client():
    """The one loop: a chunked policy (H = 6, 4 rows executed, 2 blended) in lock-step through the server gives the
    actions the same policy gives in simulation, bit for bit."""
    env = sim.make("reach", cameras=[], max_episode_steps=20)
    local = rollout(env, LinearPolicy(horizon=6), seed=3, n_action_steps=4, blend=2, record=True)
    with start("linear", horizon=6, limits=None) as server:
        policy = RemotePolicy(server.url)
        arm = SimArm(env)
        arm.reset(3)
        client = RobotClient(arm, policy, refill_at=2, blend=2, realtime=False)
        remote = client.run_episode(record=True)
        client.close()
        policy.close()
    env.close()
    assert remote.steps == local.steps == 20 and remote.requests == local.requests == 5
    np.testing.assert_array_equal(remote.frames[keys.ACTION], local.frames[keys.ACTION])


class StallingPolicy(LinearPolicy):
    """The linear policy with an injected stall: request number `stall_at` takes `stall_s` seconds."""

    def __init__(self, stall_at: int, stall_s: float) -> None:
        super().__init__(horizon=4)
        self.stall_at, self.stall_s, self.calls = stall_at, stall_s, 0

    def infer(self, obs):
        self.calls += 1
        if self.calls == self.stall_at:
            time.sleep(self.stall_s)
        return super().infer(obs)


def test_watchdog_holds_the_last_target_during_a_server_stall():
    server = ServerThread(PolicyServer(lambda: StallingPolicy(stall_at=3, stall_s=0.6), port=0,
                                       limits=robot_limits("genba_arm")))  # fmt: skip
    with server:
        policy = RemotePolicy(server.url)
        arm = SimArm(sim.make("reach", cameras=[], fps=20, max_episode_steps=40))
        arm.reset(0)
        client = RobotClient(arm, policy, limits=robot_limits("genba_arm"), realtime=True, refill_at=1)
        episode = client.run_episode(max_steps=40, record=True)
        client.close()
        policy.close()
    held, actions = episode.held_steps, episode.frames[keys.ACTION]
    assert episode.errors == 0 and episode.steps == 40
    # 0.6 s at 20 Hz: about a dozen held steps, one contiguous stretch, then fresh chunks again.
    assert 6 <= len(held) <= 16 and held == list(range(held[0], held[-1] + 1))
    assert held[-1] < 39 and held[-1] + 1 not in held
    for k in held:  # holding means repeating the last target exactly: no extrapolation
        np.testing.assert_array_equal(actions[k], actions[held[0] - 1])
    moving = np.abs(np.diff(actions[: held[0]], axis=0)).max()
    assert moving > 0  # before the stall the arm was being moved


def test_a_reply_later_than_the_timeout_drops_the_connection_and_the_client_recovers():
    server = ServerThread(PolicyServer(lambda: StallingPolicy(stall_at=3, stall_s=1.0), port=0))
    with server:
        policy = RemotePolicy(server.url, timeout_s=0.3)
        arm = SimArm(sim.make("reach", cameras=[], fps=20, max_episode_steps=60))
        arm.reset(0)
        client = RobotClient(arm, policy, realtime=True, refill_at=1)
        episode = client.run_episode(max_steps=60)
        client.close()
        policy.close()
    # One timed-out request (its late reply is never mistaken for the next one's), held meanwhile, then recovered.
    assert episode.errors >= 1 and episode.last_error.startswith("TimeoutError"), episode
    assert episode.holds >= 6 and max(episode.held_steps) < episode.steps - 5, episode.held_steps


def test_lerobot_so101_adapter_through_the_server(tmp_path):
    from genba.serving.lerobot_sim import SimSO101Config, SimSO101Follower

    task, seeds = "pick_place", range(3)
    direct = [_direct(task, s)[0] for s in seeds]
    robot = SimSO101Follower(SimSO101Config(task=task, calibration_dir=tmp_path, max_relative_target=30.0))
    robot.connect()
    assert robot.action_features == {f"{j}.pos": float for j in keys.JOINTS}
    with start("scripted", task=task) as server:
        policy = RemotePolicy(server.url)
        arm = LeRobotArm(robot, fps=robot.env.unwrapped.fps, units=so101_units(), instruction="put it in the bin")
        client = RobotClient(arm, policy, limits=robot_limits("genba_arm"), realtime=False)
        results = []
        for seed in seeds:
            robot.reset(seed)
            results.append(client.run_episode())
        policy.close()
        client.close()
    robot.disconnect()
    assert [r.success for r in results] == direct
    sent = np.array([[a[f"{j}.pos"] for j in keys.JOINTS] for a in arm.sent])  # robot units
    assert np.abs(sent[:, :5]).max() <= 180 and sent[:, 5].min() >= 0 and sent[:, 5].max() <= 100 + 1e-3
    assert sent[:, 5].max() > 50  # the gripper opened: 0..100 units, not metres


def test_client_refuses_a_robot_without_the_inputs_the_policy_needs():
    from genba.errors import GenbaError

    with start("linear", cameras=["front"], image_size=32, horizon=2) as server:
        policy = RemotePolicy(server.url)
        arm = SimArm(sim.make("reach", cameras=[]))
        arm.reset(0)
        with pytest.raises(GenbaError, match=r"missing key 'observation\.images\.front'"):
            RobotClient(arm, policy, realtime=False).run_episode(max_steps=2)
        policy.close()


def test_remote_policy_errors_are_one_line():
    from genba.errors import GenbaError

    with pytest.raises(GenbaError, match=r"'http://127\.0\.0\.1:1' is not a ws:// or wss:// URL"):
        RemotePolicy("http://127.0.0.1:1")
    with pytest.raises(GenbaError, match=r"cannot reach policy server ws://127\.0\.0\.1:1"):
        RemotePolicy("ws://127.0.0.1:1", timeout_s=2)
    with start("linear", horizon=2, api_key="k") as server, pytest.raises(GenbaError, match="HTTP 401"):
        RemotePolicy(server.url, api_key="wrong")
