"""The chunk broker: turns a policy that answers action chunks (H, A) into one action per control step.

Timing model: control step k happens at t0 + k / fps. A chunk answered for an observation taken at step s holds the
actions of steps s, s+1, ... (openpi's convention), so rows for steps that already passed are dropped. The broker
asks for the next chunk when `refill_at` or fewer of the current chunk's rows are left: with `n_action_steps` rows
executed per chunk, refill_at = H - n_action_steps (LeRobot's and openpi's meaning of n_action_steps). When a new
chunk arrives while the old one still has rows, the overlap is blended from old to new over `blend` steps.

`background=False` (simulation, evaluation): `infer` runs inline at the step that asks, so a chunk is adopted at
once and the same observations always give the same actions. `background=True` (a real arm over the network): the
request runs in a worker thread while the arm goes on executing the current chunk; `action()` then waits for it only
when nothing is left to execute, up to the step's deadline, and returns None past it (the loop's watchdog holds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

import numpy as np

from genba import keys
from genba.io import one_line


def refill_for(horizon: int, n_action_steps: int | None) -> int:
    """Rows left when the next chunk is asked for: H - n_action_steps (all H executed when None)."""
    n = horizon if n_action_steps is None else n_action_steps
    if not 1 <= n <= horizon:
        raise ValueError(f"n_action_steps={n_action_steps} must be in [1, {horizon}] (the policy's horizon)")
    return horizon - n


class ChunkBroker:
    def __init__(self, infer: Callable[[dict], dict], *, refill_at: int = 0, blend: int = 0,
                 background: bool = False) -> None:  # fmt: skip
        if refill_at < 0 or blend < 0:
            raise ValueError(f"refill_at={refill_at} and blend={blend} must be >= 0")
        self.infer, self.refill_at, self.blend = infer, refill_at, blend
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="genba-broker") if background else None
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

    def action(self, step: int, obs: dict[str, Any], deadline: float = math.inf) -> np.ndarray | None:
        """The action (A,) of control step `step`, or None when none arrived by `deadline` (perf_counter s)."""
        self._adopt(step, 0.0)
        if self._pending is None and self.remaining(step) <= self.refill_at:
            self._submit(step, obs)
        if self.remaining(step) == 0 and self._pending is not None:
            self._adopt(step, None if math.isinf(deadline) else max(0.0, deadline - time.perf_counter()))
        if self.remaining(step) == 0:
            return None
        assert self._chunk is not None
        return self._chunk[step - self._start]

    def _submit(self, step: int, obs: dict[str, Any]) -> None:
        self.requests += 1
        self._pending_step = step
        if self._pool is not None:
            self._pending = self._pool.submit(self.infer, obs)
            return
        future: Future = Future()
        try:
            future.set_result(self.infer(obs))
        except Exception as e:  # the same accounting as a failed background request
            future.set_exception(e)
        self._pending = future
        self._adopt(step, 0.0)  # inline: the new chunk serves this very step

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
            self.last_error = f"{type(error).__name__}: {one_line(error)}"[:200]
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
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
