"""RobotClient: an arm at its control rate, on action chunks from a policy server, through the one episode loop.

    import genba.sim
    from genba.serving.remote import RemotePolicy
    from genba.serving.robot_client import RobotClient
    from genba.serving.safety import robot_limits
    from genba.sim.arm import SimArm

    policy = RemotePolicy("ws://127.0.0.1:8000")  # `genba serve` running there
    client = RobotClient(SimArm(genba.sim.make("pick_place", cameras=[])), policy, limits=robot_limits("genba_arm"))
    client.robot.reset(seed=0)
    episode = client.run_episode(max_steps=20)  # genba.policies.rollout.Episode: success, steps, holds, ...
    client.close()
    policy.close()

The loop is genba.policies.rollout.run_episode, the same one simulation and evaluation use; what the client adds is
a background chunk broker in real time (the next chunk is asked for while the arm executes the current one: `refill_at`
rows before the end, a third of the horizon by default, with the overlap blended over `blend` steps), real-time
pacing with a watchdog, and the action limits applied again before anything reaches a motor.
"""

from __future__ import annotations

import threading
from typing import Any

from genba.policies.broker import ChunkBroker
from genba.policies.rollout import Episode, Limits, Robot, run_episode


class RobotClient:
    """realtime=True: step k is due at t0 + k / fps, and an action that has not arrived by `deadline_fraction` of the
    step's period makes the watchdog hold. realtime=False: lock-step, for simulations, which wait for the policy
    (up to the RemotePolicy's timeout) instead of holding; the same observations give the same actions."""

    def __init__(self, robot: Robot, policy: Any, *, limits: Limits | None = None, refill_at: int | None = None,
                 blend: int = 2, realtime: bool = True, deadline_fraction: float = 0.9) -> None:  # fmt: skip
        self.robot, self.policy, self.limits = robot, policy, limits
        horizon = policy.action_spec.horizon
        # Ask when a third of the chunk is left: enough slack for a round trip plus inference.
        refill = refill_at if refill_at is not None else (horizon // 3 if horizon > 1 else 0)
        # Lock-step runs the broker inline, so the same observations always give the same actions (as in simulation).
        self.broker = ChunkBroker(policy.infer, refill_at=refill, blend=blend, background=realtime)
        self.realtime, self.deadline_fraction = realtime, deadline_fraction
        self.stop_event = threading.Event()

    def run_episode(self, max_steps: int = 10_000, record: bool = False) -> Episode:
        """Control until the robot reports done, `max_steps`, or stop_event (the robot's episode already reset)."""
        return run_episode(self.robot, self.policy, broker=self.broker, realtime=self.realtime, limits=self.limits,
                           max_steps=max_steps, record=record, deadline_fraction=self.deadline_fraction,
                           stop_event=self.stop_event)  # fmt: skip

    def close(self) -> None:
        self.broker.close()
