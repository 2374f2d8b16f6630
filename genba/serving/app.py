"""The policy server itself: asyncio websockets, a batcher in front of one policy thread, structured logs.

Life of a request: the connection's handler receives a binary frame, decodes it strictly and validates it against
the input spec (on the event loop; microseconds), queues it for the batcher, which hands batches to a single
worker thread (policies need not be thread-safe, and the event loop stays free to read other clients), then checks
and clips the actions and replies. Errors become one-line text replies; the connection and the server stay up.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from genba import keys
from genba.errors import GenbaError
from genba.serving.policies import Policy
from genba.serving.protocol import RESET, SERVER_TIMING, ProtocolError, packb, unpackb
from genba.serving.safety import ActionLimits

log = logging.getLogger("genba.serve")
HEALTHZ = "/healthz"


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON object per line: easy to grep, easy to ship to a log store."""
    if log.isEnabledFor(level):
        head = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "level": logging.getLevelName(level), "event": event}
        log.log(level, json.dumps(head | fields, default=str, ensure_ascii=False))


class UnsafeActions(RuntimeError):
    """The policy's output is not fit for a motor (wrong shape, NaN); the client is told, nothing is sent."""


@dataclass
class _Request:
    policy: Policy
    obs: dict[str, Any]
    future: asyncio.Future
    queued: float  # perf_counter when queued
    picked: float = 0.0  # perf_counter when the batcher took it (the policy thread was free)


@dataclass
class _Stats:
    requests: int = 0
    errors: int = 0
    connections: int = 0
    refused: int = 0
    batches: int = 0
    latency_ms: list[float] = field(default_factory=list)  # server-side, receipt to reply, bounded below


class PolicyServer:
    def __init__(
        self,
        make_policy: Callable[[], Policy],
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key: str | None = None,
        limits: ActionLimits | None = None,
        max_message_bytes: int = 8 * 2**20,
        max_connections: int = 32,
        batch_wait_ms: float = 2.0,
    ) -> None:
        self.make_policy = make_policy
        self.policy = make_policy()  # the shared instance; also the source of the specs
        self.host, self.port = host, port
        self._api_key = api_key.encode() if api_key else None
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.batch_wait = batch_wait_ms / 1000.0
        self.spec = self.policy.input_spec
        self.stats = _Stats()
        self._open = 0
        self._queue: asyncio.Queue[_Request] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="genba-policy")
        self._started = time.time()
        if limits is not None and len(limits.names) != self.policy.action_spec.dim:
            raise ValueError(f"robot limits have {len(limits.names)} joints, the policy {self.policy.action_spec.dim}")
        if limits is not None and limits.units != self.policy.action_spec.units:
            # Degree limits on radian actions would clip nothing that matters: refuse rather than look safe.
            raise GenbaError(
                f"the robot's action limits are in {limits.units} but policy {self.policy.name} acts in "
                f"{self.policy.action_spec.units}; choose the robot whose units the policy's actions use "
                "(the robot client converts them for the arm)"
            )

    # ---- what a client learns on connect ----
    def metadata(self) -> dict:
        from genba import __version__

        return {
            "server": f"genba {__version__}",
            "protocol": "openpi-websocket-msgpack",
            "policy": self.policy.name,
            "input_spec": self.spec.to_json(),
            "action_spec": self.policy.action_spec.to_json(),
            "action_limits": None if self.limits is None else self.limits.to_json(),
            "max_message_bytes": self.max_message_bytes,
            "max_batch": self.policy.max_batch,
            "instruction_keys": [keys.TASK, "prompt"],
            "reset_key": RESET,
        }

    # ---- HTTP before the upgrade: health check, connection cap, auth ----
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == HEALTHZ:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self._api_key is not None:
            values = request.headers.get_all("Authorization")  # .get() raises on a repeated header
            given = values[0] if len(values) == 1 else ""  # two keys, even two right ones, are refused
            expected = b"Api-Key " + self._api_key
            if not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
                self.stats.refused += 1
                log_event("auth_refused", logging.WARNING, peer=_peer(connection))
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        if self._open >= self.max_connections:
            self.stats.refused += 1
            log_event("busy", logging.WARNING, peer=_peer(connection), open=self._open)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    # ---- one client ----
    async def _handler(self, ws: ServerConnection) -> None:
        self._open += 1
        self.stats.connections += 1
        peer = _peer(ws)
        served = errors = 0
        try:
            policy = self.make_policy() if self.policy.per_connection else self.policy
            log_event("connect", peer=peer, open=self._open)
            await ws.send(packb(self.metadata()))
            prev_total_ms = None
            async for message in ws:
                received = time.perf_counter()
                reply = await self._answer(policy, message, received, prev_total_ms)
                await ws.send(reply)
                if isinstance(reply, str):
                    errors += 1
                else:
                    served += 1
                prev_total_ms = (time.perf_counter() - received) * 1000.0
        except websockets.ConnectionClosed:
            pass
        finally:
            self._open -= 1
            log_event("disconnect", peer=peer, requests=served, errors=errors, open=self._open)

    async def _answer(self, policy: Policy, message: Any, received: float, prev_total_ms: float | None) -> Any:
        try:
            if not isinstance(message, bytes):
                raise ProtocolError("send observations as binary msgpack frames, not text")
            obs = self.spec.validate(unpackb(message))
            decoded = time.perf_counter()
            future = asyncio.get_running_loop().create_future()
            assert self._queue is not None
            await self._queue.put(_Request(policy, obs, future, decoded))
            result, timing = await future
            actions = self._check_actions(result, obs)
        except ProtocolError as e:
            self.stats.errors += 1
            log_event("bad_request", logging.INFO, reason=str(e))
            return f"bad request: {e}"
        except UnsafeActions as e:
            self.stats.errors += 1
            log_event("unsafe_actions", logging.ERROR, policy=policy.name, reason=str(e))
            return f"policy error: {e}; no actions sent"
        except Exception as e:  # a policy bug: log it fully here, tell the client one line
            self.stats.errors += 1
            log_event(
                "policy_failed", logging.ERROR, policy=policy.name, error=repr(e), traceback=traceback.format_exc()
            )
            return f"policy error: {type(e).__name__}"
        total_ms = (time.perf_counter() - received) * 1000.0
        timing["decode_ms"] = (decoded - received) * 1000.0
        timing["total_ms"] = total_ms
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        self.stats.requests += 1
        if len(self.stats.latency_ms) < 1_000_000:
            self.stats.latency_ms.append(total_ms)
        return packb({keys.ACTIONS: actions, SERVER_TIMING: timing})

    def _check_actions(self, result: Any, obs: dict) -> np.ndarray:
        spec = self.policy.action_spec
        raw = result.get(keys.ACTIONS) if isinstance(result, dict) else None
        try:
            actions = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            actions = np.zeros(0, np.float32)
        if raw is None or actions.ndim != 2 or actions.shape[1] != spec.dim or len(actions) == 0:
            raise UnsafeActions(f"policy returned no (H, {spec.dim}) actions")
        if not np.isfinite(actions).all():
            raise UnsafeActions("policy returned non-finite actions")  # never forward NaN to a motor
        if self.limits is not None:
            actions = self.limits.clip(actions, obs.get(keys.OBS_STATE))
        return actions

    # ---- batching: one policy thread, concurrent requests grouped with a bounded wait ----
    async def _batcher(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            first.picked = time.perf_counter()
            batch = [first]
            if not first.policy.per_connection and first.policy.max_batch > 1:
                deadline = time.perf_counter() + self.batch_wait
                while len(batch) < first.policy.max_batch:
                    if not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                        batch[-1].picked = time.perf_counter()
                        continue
                    remaining = deadline - time.perf_counter()
                    # Wait only when other clients are connected and may be about to send: a lone client never waits.
                    if remaining <= 0 or self._open <= len(batch):
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                        batch[-1].picked = time.perf_counter()
                    except TimeoutError:
                        break
            shared = [r for r in batch if r.policy is first.policy]
            for r in batch:  # per-connection requests that slipped in: their own calls, in order
                if r.policy is not first.policy:
                    await self._run(loop, [r])
            await self._run(loop, shared)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        started = time.perf_counter()
        policy = batch[0].policy
        try:
            if len(batch) == 1:
                (result,), seconds = await loop.run_in_executor(self._pool, _timed, policy.infer, batch[0].obs, True)
                results = [result]
            else:
                results, seconds = await loop.run_in_executor(
                    self._pool, _timed, policy.infer_batch, [r.obs for r in batch], False
                )
            if len(results) != len(batch):  # checked here: an error past this point would stop the batcher
                raise UnsafeActions(f"policy returned {len(results)} results for a batch of {len(batch)}")
        except Exception as e:
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(e)
            return
        self.stats.batches += 1
        for r, result in zip(batch, results, strict=True):
            timing = {
                "infer_ms": seconds * 1000.0,  # the policy's own compute, timed in its thread
                "queue_ms": (r.picked - r.queued) * 1000.0,  # behind another batch in the policy thread
                "batch_wait_ms": (started - r.picked) * 1000.0,  # waiting for more requests to batch with
                "batch_size": len(batch),
            }
            if not r.future.done():  # the client may have gone
                r.future.set_result((result, timing))

    # ---- lifecycle ----
    async def serve(
        self,
        stop: asyncio.Event,
        announce: Callable[[str], None] | None = None,
        ready: Callable[[int], None] | None = None,
    ) -> None:
        """Listen until `stop` is set; then close every connection (1001 going away) and drain."""
        self._queue = asyncio.Queue()
        batcher = asyncio.create_task(self._batcher())
        try:
            await self._listen(stop, announce, ready)
        finally:
            batcher.cancel()
            self._pool.shutdown(wait=True)
        log_event("stopped", **{k: v for k, v in self.summary().items() if k != "address"})

    async def _listen(
        self, stop: asyncio.Event, announce: Callable[[str], None] | None, ready: Callable[[int], None] | None
    ) -> None:
        try:
            server = await serve(
                self._handler,
                self.host,
                self.port,
                process_request=self._process_request,
                max_size=self.max_message_bytes,
                # openpi clients wait for each reply, so a deep receive buffer only lets one client pile up memory
                # (max_queue frames x max_size each).
                max_queue=4,
                compression=None,  # openpi's client asks for none; images do not compress anyway
            )
        except OSError as e:  # port in use, an address not on this machine, a host name that does not resolve
            reason = e.strerror or str(e)
            raise GenbaError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        try:
            self.port = server.sockets[0].getsockname()[1]
            self._started = time.time()
            line = (
                f"genba serve: listening on ws://{self.host}:{self.port} policy={self.policy.name} "
                f"auth={'api-key' if self._api_key else 'off'} input: {self.spec.describe()} "
                f"actions: float32[{self.policy.action_spec.horizon}x{self.policy.action_spec.dim}] "
                f"limits={'off' if self.limits is None else self.limits.units}"
            )
            log_event(
                "start",
                address=f"ws://{self.host}:{self.port}",
                policy=self.policy.name,
                input_spec=self.spec.to_json(),
                auth=self._api_key is not None,
            )
            if announce:
                announce(line)
            if ready:
                ready(self.port)
            await stop.wait()
            log_event("stopping", open=self._open)
        finally:
            server.close()  # closes connections with 1001 and waits for their handlers
            await server.wait_closed()

    def summary(self) -> dict:
        lat = np.asarray(self.stats.latency_ms, dtype=np.float64)
        pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if lat.size else (lambda q: None)
        return {
            "address": f"ws://{self.host}:{self.port}",
            "policy": self.policy.name,
            "requests": self.stats.requests,
            "errors": self.stats.errors,
            "connections": self.stats.connections,
            "refused": self.stats.refused,
            "batches": self.stats.batches,
            "server_ms_p50": pct(50),
            "server_ms_p99": pct(99),
            "uptime_s": round(time.time() - self._started, 3),
        }


def _timed(fn: Callable[[Any], Any], arg: Any, single: bool) -> tuple[Any, float]:
    """Run the policy in its thread and time only the policy (thread hand-offs count as server overhead)."""
    started = time.perf_counter()
    out = fn(arg)
    return ((out,) if single else out), time.perf_counter() - started


def _peer(connection: ServerConnection) -> str:
    addr = connection.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"


class ServerThread:
    """Run a PolicyServer on its own event loop in a background thread (tests, benchmarks, examples)."""

    def __init__(self, server: PolicyServer, timeout: float = 30.0) -> None:
        self.server = server
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="genba-serve", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"policy server did not start: {self._error!r}")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.server.host}:{self.server.port}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.server.serve(self._stop, ready=lambda port: self._ready.set())

        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced to the starting thread
            self._error = e
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> dict:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        return self.server.summary()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
