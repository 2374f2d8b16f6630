"""The robot side: a websocket client of `genba serve`, an action-chunk broker and a fixed-rate control loop.

    policy = RemotePolicy("ws://127.0.0.1:8000")
    client = RobotClient(SimArm(genba.sim.make("pick_place", cameras=[])), policy, limits=robot_limits("genba_arm"))
    client.run_episode(seed=0)

Timing model: control step k happens at t0 + k / fps. A chunk answered for an observation taken at step s holds the
actions of steps s, s+1, ... (openpi's convention), so rows for steps that already passed are dropped. The broker
asks for the next chunk when `refill_at` or fewer of the current chunk's steps are left (a request in flight at a
time); when it arrives while the old chunk still has steps, the overlap is blended from old to new over `blend`
steps. When step k has no action (the chunk ran out and nothing fresh arrived before the step's deadline) the
watchdog holds the last commanded target: the arm stays where it was told to be; nothing is extrapolated.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.serving.protocol import RESET, packb, unpackb
from genba.serving.safety import ActionLimits


class PolicyServerError(RuntimeError):
    """The server answered with an error message (a text frame) instead of actions."""


class RemotePolicy:
    """A client of openpi's protocol (genba's, numpy 2 friendly): `infer(obs) -> {"actions": (H, A), ...}`.
    A reply slower than `timeout_s` drops the connection (a late reply must never be taken for the next one) and
    the next call reconnects."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._ws: Any = None
        self.metadata: dict = {}
        self._connect()

    def _connect(self) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        try:
            # Entered as a context (websockets 17 deprecates bare connections); left in close().
            self._ws = connect(
                self.url,
                compression=None,
                max_size=None,
                additional_headers=self._headers,
                open_timeout=self.timeout_s,
            ).__enter__()
        except InvalidStatus as e:
            raise GenbaError(
                f"policy server {self.url} refused the connection: HTTP {e.response.status_code}"
            ) from None
        except InvalidURI:
            raise GenbaError(f"policy server address {self.url!r} is not a ws:// or wss:// URL") from None
        except (OSError, InvalidHandshake) as e:  # refused, unreachable, timed out, not a websocket server
            raise GenbaError(f"cannot reach policy server {self.url}: {e}") from None
        try:
            metadata = unpackb(self._ws.recv(timeout=self.timeout_s))
            if not isinstance(metadata, dict):
                raise TypeError(f"a {type(metadata).__name__}, not a map")
        except Exception as e:  # closed or silent right after the handshake, or not openpi's metadata message
            self.close()
            raise GenbaError(f"policy server {self.url} sent no metadata: {type(e).__name__}: {e}") from None
        self.metadata = metadata

    @property
    def input_keys(self) -> list[str]:
        return list(self.metadata.get("input_spec", {}))

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            self._connect()
        try:
            self._ws.send(packb(obs))
            reply = self._ws.recv(timeout=self.timeout_s)
        except Exception:
            self.close()  # timeout or a dropped connection: start clean next time
            raise
        if isinstance(reply, str):
            raise PolicyServerError(reply)
        return unpackb(reply)

    def reset(self) -> None:
        pass  # the server resets per-connection policies on the `reset` flag of an episode's first request

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None


class ChunkBroker:
    """Turns a chunked policy into one action per control step, asking for the next chunk ahead of time."""

    def __init__(self, infer: Callable[[dict], dict], *, refill_at: int = 0, blend: int = 0) -> None:
        self.infer, self.refill_at, self.blend = infer, refill_at, blend
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="genba-broker")
        self.reset()

    def reset(self) -> None:
        self._chunk: np.ndarray | None = None  # (H, A)
        self._start = 0  # the control step of the chunk's first row
        self._pending: Future | None = None
        self._pending_step = 0
        self.requests = self.chunks = self.errors = 0
        self.last_error = ""

    def remaining(self, step: int) -> int:
        """How many of the current chunk's rows are for steps >= step."""
        if self._chunk is None:
            return 0
        return max(0, self._start + len(self._chunk) - step)

    def action(self, step: int, obs: dict[str, Any], deadline: float) -> np.ndarray | None:
        """The action (A,) of control step `step`, or None when none arrived by `deadline` (perf_counter s)."""
        self._adopt(step, 0.0)
        if self._pending is None and self.remaining(step) <= self.refill_at:
            self._pending, self._pending_step = self._pool.submit(self.infer, obs), step
            self.requests += 1
        if self.remaining(step) == 0 and self._pending is not None:
            self._adopt(step, None if math.isinf(deadline) else max(0.0, deadline - time.perf_counter()))
        if self.remaining(step) == 0:
            return None
        assert self._chunk is not None
        return self._chunk[step - self._start]

    def _adopt(self, step: int, wait_s: float | None) -> None:
        if self._pending is None:
            return
        # Wait on completion, not on exception types: a request's own TimeoutError is concurrent.futures' too.
        if wait_s != 0:
            futures_wait([self._pending], timeout=wait_s)
        if not self._pending.done():
            return
        error = self._pending.exception()
        if error is not None:  # the server said no, or the connection dropped or timed out: ask again next step
            self._pending, self.errors = None, self.errors + 1
            self.last_error = f"{type(error).__name__}: {error}"[:200]
            return
        result = self._pending.result()
        self._pending = None
        new = np.array(result[keys.ACTIONS], dtype=np.float32)  # (H, A), writable copy
        start, overlap = self._pending_step, self.remaining(step)
        if overlap and self.blend and self._chunk is not None:
            n = min(overlap, self.blend)
            for j in range(n):  # steps step .. step+n-1: weight of the new chunk rises to 1
                s = step + j
                if s - start < len(new):
                    w = (j + 1) / (n + 1)
                    new[s - start] = (1 - w) * self._chunk[s - self._start] + w * new[s - start]
        self._chunk, self._start = new, start
        self.chunks += 1

    def settle(self, timeout: float | None = None) -> None:
        """Wait until the request in flight (if any) has finished; it is adopted at the next step."""
        if self._pending is not None:
            futures_wait([self._pending], timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Robot(Protocol):
    """What the control loop drives; adapters live in genba.serving.robots."""

    fps: float

    def observe(self) -> dict[str, Any]: ...  # LeRobot keys: observation.state (A,), images, task, ...

    def send(self, action: np.ndarray) -> None: ...  # (A,) joint targets in the policy's units

    @property
    def done(self) -> bool: ...


@dataclass
class StepLog:
    step: int
    action: np.ndarray  # (A,) what was sent
    held: bool  # the watchdog held the last target


class RobotClient:
    """Runs a robot at its control rate on actions from a (remote) policy, through a ChunkBroker and a watchdog.

    realtime=True: step k is due at t0 + k / fps, and an action that has not arrived by `deadline_fraction` of the
    step's period makes the watchdog hold. realtime=False: lock-step, for simulations, which wait for the policy
    (up to the RemotePolicy's timeout) instead of holding; the same observations give the same actions."""

    def __init__(self, robot: Robot, policy: Any, *, limits: ActionLimits | None = None,
                 refill_at: int | None = None, blend: int = 2, realtime: bool = True,
                 deadline_fraction: float = 0.9) -> None:  # fmt: skip
        self.robot, self.policy, self.limits = robot, policy, limits
        horizon = int(getattr(policy, "metadata", {}).get("action_spec", {}).get("shape", [1])[0])
        # Ask when a third of the chunk is left: enough slack for a round trip plus inference.
        refill = refill_at if refill_at is not None else (horizon // 3 if horizon > 1 else 0)
        self.broker = ChunkBroker(policy.infer, refill_at=refill, blend=blend)
        self.realtime, self.deadline_fraction = realtime, deadline_fraction
        self.period = 1.0 / robot.fps
        self.input_keys = getattr(policy, "input_keys", None)
        self.resets = getattr(policy, "metadata", {}).get("reset_key") == RESET
        self.log: list[StepLog] = []
        self.stop_event = threading.Event()

    def _request(self, obs: dict[str, Any], first: bool) -> dict[str, Any]:
        if self.input_keys is not None:
            spec = self.policy.metadata["input_spec"]
            missing = [k for k, f in spec.items() if f.get("required", True) and k not in obs]
            if missing:
                raise GenbaError(f"the robot provides no {missing[0]!r}, which the policy needs "
                                 f"(robot gives: {', '.join(obs)})")  # fmt: skip
            obs = {k: v for k, v in obs.items() if k in spec}
        if first and self.resets:
            obs[RESET] = True
        return obs

    def run_episode(self, max_steps: int = 10_000) -> dict:
        """Control until the robot reports done, `max_steps`, or stop_event; returns the episode's counters."""
        self.broker.reset()
        self.log = []
        last: np.ndarray | None = None
        t0 = time.perf_counter()
        holds = 0
        for step in range(max_steps):
            # Lock-step (a simulation that waits for the policy): no deadline; the policy's own timeout still applies.
            deadline = t0 + (step + self.deadline_fraction) * self.period if self.realtime else math.inf
            obs = self.robot.observe()
            current = np.asarray(obs[keys.OBS_STATE], dtype=np.float32)
            action = self.broker.action(step, self._request(obs, step == 0), deadline)
            held = action is None
            if held:  # watchdog: the last commanded target (or where the arm is), never a guess at the next one
                holds += 1
                action = last if last is not None else current
            elif self.limits is not None:
                action = self.limits.clip(action[None], current)[0]
            self.robot.send(action)
            last = np.array(action, dtype=np.float32)
            self.log.append(StepLog(step, last, held))
            if self.robot.done or self.stop_event.is_set():
                break
            if self.realtime:
                time.sleep(max(0.0, t0 + (step + 1) * self.period - time.perf_counter()))
        return {
            "steps": len(self.log),
            "holds": holds,
            "requests": self.broker.requests,
            "chunks": self.broker.chunks,
            "errors": self.broker.errors,
            "last_error": self.broker.last_error,
            "seconds": round(time.perf_counter() - t0, 3),
            **getattr(self.robot, "episode_info", lambda: {})(),
        }

    def close(self) -> None:
        self.broker.close()
