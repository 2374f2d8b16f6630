"""The policy server itself: asyncio websockets, a batcher in front of one policy thread, structured logs.

Life of a request: the connection's handler receives a binary frame, decodes it strictly and validates it against
the input spec (on the event loop; microseconds), queues it for the batcher, which hands batches to a single
worker thread (policies need not be thread-safe, and the event loop stays free to read other clients), then checks
and clips the actions and replies. Errors become one-line text replies; the connection and the server stay up.
What clients can hold is bounded (genba.serving.server's docstring): idle connections time out or give way to a
newcomer when the server is full, and bytes in flight stay within a server-wide budget (genba.serving.limits).
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
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from genba import keys
from genba.errors import GenbaError
from genba.io import one_line
from genba.policies.contract import Policy, check_actions, infer_batch, policy_name
from genba.policies.spec import SpecError
from genba.serving.limits import ByteBudget, return_freed_memory
from genba.serving.protocol import ProtocolError, packb, unpackb
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
    reset: bool  # the client starts an episode: the policy's reset() first
    queued: float  # perf_counter when queued
    picked: float = 0.0  # perf_counter when the batcher took it (the policy thread was free)


@dataclass
class _Client:
    peer: str
    last_active: float  # time.monotonic() of the handshake, the last message received, the last reply sent
    busy: bool = False  # a request is being answered: never closed as idle


@dataclass
class _Stats:
    requests: int = 0
    errors: int = 0
    connections: int = 0
    refused: int = 0
    closed_idle: int = 0  # idle timeouts and evictions
    closed_busy: int = 0  # closed because the in-flight byte budget was spent
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
        per_connection: bool | None = None,
        max_batch: int = 16,
        batch_wait_ms: float = 2.0,
        idle_timeout_s: float = 60.0,
        evict_idle_s: float = 10.0,
        max_inflight_bytes: int = 64 * 2**20,
    ) -> None:
        self.make_policy = make_policy
        self.policy = make_policy()  # the shared instance; also the source of the specs
        self.name = policy_name(self.policy)
        # A policy that batches is stateless across clients and shared; any other may keep episode state (the scripted
        # experts keep a phase), so by default each connection gets its own instance.
        if per_connection is None:
            per_connection = not callable(getattr(self.policy, "infer_batch", None))
        self.per_connection = per_connection
        self.max_batch = 1 if self.per_connection else max_batch
        self.host, self.port = host, port
        self._api_key = api_key.encode() if api_key else None
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.batch_wait = batch_wait_ms / 1000.0
        self.idle_timeout_s = idle_timeout_s
        self.evict_idle_s = evict_idle_s
        self.spec = self.policy.input_spec
        self.stats = _Stats()
        # Admitted connections, from the moment _process_request lets one through (so that simultaneous handshakes
        # cannot overshoot the cap) until its handler ends.
        self._clients: dict[ServerConnection, _Client] = {}
        self._budget = ByteBudget(max_inflight_bytes, on_shed=self._shed)
        self._closing: set[asyncio.Task] = set()  # evictions under way (a task must be referenced until done)
        self._queue: asyncio.Queue[_Request] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="genba-policy")
        self._started = time.time()
        if limits is not None and len(limits.names) != self.policy.action_spec.dim:
            raise ValueError(f"robot limits have {len(limits.names)} joints, the policy {self.policy.action_spec.dim}")
        # Actions are clipped as the policy gives them: limits in the robot's units (the SO-101's degrees) are
        # converted to the policy's (genba's radians), or refused in one line when no conversion is known.
        try:
            self.limits = None if limits is None else limits.in_units(self.policy.action_spec.units)
        except GenbaError as e:
            raise GenbaError(f"policy {self.name} acts in {self.policy.action_spec.units}: {e}; serve it with "
                             "robot=none or the robot whose units it uses") from None  # fmt: skip

    # ---- what a client learns on connect ----
    def metadata(self) -> dict:
        from genba import __version__

        return {
            "server": f"genba {__version__}",
            "protocol": "openpi-websocket-msgpack",
            "policy": self.name,
            "input_spec": self.spec.to_json(),
            "action_spec": self.policy.action_spec.to_json(),
            "action_limits": None if self.limits is None else self.limits.to_json(),
            "max_message_bytes": self.max_message_bytes,
            "max_batch": self.max_batch,
            "per_connection": self.per_connection,
            "instruction_keys": [keys.TASK, keys.PROMPT, *(k for k, f in self.spec.features.items() if f.sample_rate)],
            "audio_rate_key": keys.OBS_AUDIO_RATE,
            "reset_key": keys.RESET,
        }

    # ---- HTTP before the upgrade: health check, auth, connection cap ----
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == HEALTHZ:  # probes add query strings (cache busting)
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self._api_key is not None:
            values = request.headers.get_all("Authorization")  # .get() raises on a repeated header
            given = values[0] if len(values) == 1 else ""  # two keys, even two right ones, are refused
            expected = b"Api-Key " + self._api_key
            if not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
                self.stats.refused += 1
                log_event("auth_refused", logging.WARNING, peer=_peer(connection))
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        for gone in [c for c in self._clients if c.state is State.CLOSED]:  # died in the handshake: no handler ran
            del self._clients[gone]
        if len(self._clients) >= self.max_connections and not self._evict_idlest():
            self.stats.refused += 1
            log_event("busy", logging.WARNING, peer=_peer(connection), open=len(self._clients))
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        # Counted now, not when the handler starts: the handshake's reply is written before the handler runs, and
        # the cap must hold however many handshakes arrive at once.
        self._clients[connection] = _Client(_peer(connection), time.monotonic())
        return None

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._clients.pop(connection, None)  # admitted, then refused by websockets (not an upgrade request)
        if request.method == "HEAD":
            response.body = b""  # HTTP: the headers of the GET, never a body

    def _evict_idlest(self) -> bool:
        """Make room for a newcomer by closing the longest-idle connection, if it has been idle for evict_idle_s.

        Not a per-address cap or a reserved slot: the arm's client and a stray or hostile local process share
        127.0.0.1 (or a NAT address), and a slot for authenticated clients helps nothing without a key or with a
        shared one. An arm's client sends every control step, so it is never the longest idle; connections that only
        answer pings are, and give way. A server full of active clients still answers 503."""
        now = time.monotonic()
        idle = [(c.last_active, ws) for ws, c in self._clients.items() if not c.busy and ws.state is State.OPEN]
        since, ws = min(idle, key=lambda t: t[0], default=(now, None))
        if ws is None or now - since < self.evict_idle_s:
            return False
        client = self._clients.pop(ws)
        self.stats.closed_idle += 1
        log_event("evicted", logging.WARNING, peer=client.peer, idle_s=round(now - since, 3))
        task = asyncio.create_task(ws.close(CloseCode.TRY_AGAIN_LATER, "server full: closed as the longest idle"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return True

    def _shed(self, ws: ServerConnection, held: int) -> None:
        self.stats.closed_busy += 1
        client = self._clients.pop(ws, None)
        log_event("over_budget", logging.WARNING, peer=client.peer if client else "?", held=held)

    # ---- one client ----
    async def _handler(self, ws: ServerConnection) -> None:
        client = self._clients.get(ws)
        if client is None:  # closed for the byte budget or a newcomer before its handler started
            return
        self.stats.connections += 1
        served = errors = 0
        try:
            policy = self.make_policy() if self.per_connection else self.policy
            log_event("connect", peer=client.peer, open=len(self._clients))
            await ws.send(packb(self.metadata()))
            prev_total_ms = None
            while ws in self._clients:  # else closed for the byte budget or a newcomer: read nothing more
                try:
                    async with asyncio.timeout(self.idle_timeout_s):  # recv() is safe to cancel: nothing is lost
                        message = await ws.recv()
                except TimeoutError:
                    self.stats.closed_idle += 1
                    log_event("idle_timeout", peer=client.peer, idle_s=self.idle_timeout_s)
                    reason = f"idle for {self.idle_timeout_s:g} s; reconnect to continue"
                    await ws.close(CloseCode.NORMAL_CLOSURE, reason)
                    break
                received = time.perf_counter()
                client.last_active = time.monotonic()
                size = len(message) if isinstance(message, bytes) else len(message.encode())
                client.busy = True
                try:
                    reply = await self._answer(policy, message, received, prev_total_ms)
                finally:
                    del message  # else held, no longer counted, while waiting for the next one
                    self._budget.release(ws, size)
                    client.busy = False
                await ws.send(reply)
                client.last_active = time.monotonic()
                if isinstance(reply, str):
                    errors += 1
                else:
                    served += 1
                prev_total_ms = (time.perf_counter() - received) * 1000.0
        except websockets.ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)
            log_event("disconnect", peer=client.peer, requests=served, errors=errors, open=len(self._clients))

    async def _answer(self, policy: Policy, message: Any, received: float, prev_total_ms: float | None) -> Any:
        try:
            if not isinstance(message, bytes):
                raise ProtocolError("send observations as binary msgpack frames, not text")
            obs = self.spec.validate(unpackb(message))
            # A shared policy serves many episodes at once: one client's reset is not its own.
            reset = bool(obs.pop(keys.RESET, False)) and self.per_connection
            decoded = time.perf_counter()
            future = asyncio.get_running_loop().create_future()
            assert self._queue is not None
            await self._queue.put(_Request(policy, obs, future, reset, decoded))
            result, timing = await future
            actions = self._check_actions(result, obs)
        except SpecError as e:  # ProtocolError included: the message or the observation, not the policy
            self.stats.errors += 1
            log_event("bad_request", logging.INFO, reason=one_line(e))
            return f"bad request: {one_line(e)}"
        except UnsafeActions as e:
            self.stats.errors += 1
            log_event("unsafe_actions", logging.ERROR, policy=self.name, reason=one_line(e))
            return f"policy error: {one_line(e)}; no actions sent"
        except Exception as e:  # a policy bug: log it fully here, tell the client one line
            self.stats.errors += 1
            log_event("policy_failed", logging.ERROR, policy=self.name, error=repr(e), traceback=traceback.format_exc())
            return f"policy error: {type(e).__name__}"
        total_ms = (time.perf_counter() - received) * 1000.0
        timing["decode_ms"] = (decoded - received) * 1000.0
        timing["total_ms"] = total_ms
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        self.stats.requests += 1
        if len(self.stats.latency_ms) < 1_000_000:
            self.stats.latency_ms.append(total_ms)
        return packb({keys.ACTIONS: actions, keys.SERVER_TIMING: timing})

    def _check_actions(self, result: Any, obs: dict) -> np.ndarray:
        try:
            actions = check_actions(result, self.policy.action_spec)
        except ValueError as e:
            raise UnsafeActions(one_line(e)) from None
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
            if not self.per_connection and self.max_batch > 1:
                deadline = time.perf_counter() + self.batch_wait
                while len(batch) < self.max_batch:
                    if not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                        batch[-1].picked = time.perf_counter()
                        continue
                    remaining = deadline - time.perf_counter()
                    # Wait only when other clients are connected and may be about to send: a lone client never waits.
                    if remaining <= 0 or len(self._clients) <= len(batch):
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                        batch[-1].picked = time.perf_counter()
                    except TimeoutError:
                        break
            await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        started = time.perf_counter()
        policy = batch[0].policy
        try:
            if len(batch) == 1:
                (result,), seconds = await loop.run_in_executor(self._pool, _timed_one, policy, batch[0])
                results = [result]
            else:  # a batch is always of a shared policy, whose reset() no client's request calls
                results, seconds = await loop.run_in_executor(
                    self._pool, _timed, infer_batch, policy, [r.obs for r in batch]
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
        return_freed_memory()
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
                process_response=self._process_response,
                create_connection=self._budget.connection_class(),
                server_header="genba",  # not websockets' default, which names the Python and websockets versions
                max_size=self.max_message_bytes,
                # openpi clients wait for each reply, so a receive buffer only lets a client pile up memory: one frame
                # queued, one in the handler (counted in the in-flight budget), one being read, at most.
                max_queue=1,
                compression=None,  # openpi's client asks for none; images do not compress anyway
            )
        except OSError as e:  # port in use, an address not on this machine, a host name that does not resolve
            reason = e.strerror or str(e)
            raise GenbaError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        try:
            self.port = server.sockets[0].getsockname()[1]
            self._started = time.time()
            line = (
                f"genba serve: listening on ws://{self.host}:{self.port} policy={self.name} "
                f"auth={'api-key' if self._api_key else 'off'} input: {self.spec.describe()} "
                f"actions: float32[{self.policy.action_spec.horizon}x{self.policy.action_spec.dim}] "
                f"limits={'off' if self.limits is None else f'{self.limits.robot} in {self.limits.units}'}"
            )
            log_event(
                "start",
                address=f"ws://{self.host}:{self.port}",
                policy=self.name,
                input_spec=self.spec.to_json(),
                auth=self._api_key is not None,
            )
            if announce:
                announce(line)
            if ready:
                ready(self.port)
            await stop.wait()
            log_event("stopping", open=len(self._clients))
        finally:
            server.close()  # closes connections with 1001 and waits for their handlers
            await server.wait_closed()

    def summary(self) -> dict:
        lat = np.asarray(self.stats.latency_ms, dtype=np.float64)
        pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if lat.size else (lambda q: None)
        return {
            "address": f"ws://{self.host}:{self.port}",
            "policy": self.name,
            "requests": self.stats.requests,
            "errors": self.stats.errors,
            "connections": self.stats.connections,
            "refused": self.stats.refused,
            "closed_idle": self.stats.closed_idle,
            "closed_busy": self.stats.closed_busy,
            "batches": self.stats.batches,
            "server_ms_p50": pct(50),
            "server_ms_p99": pct(99),
            "uptime_s": round(time.time() - self._started, 3),
        }


def _timed(fn: Callable[[Policy, Any], Any], policy: Policy, arg: Any) -> tuple[Any, float]:
    """Run the policy in its thread and time only the policy (thread hand-offs count as server overhead)."""
    started = time.perf_counter()
    out = fn(policy, arg)
    return out, time.perf_counter() - started


def _timed_one(policy: Policy, request: _Request) -> tuple[tuple[Any], float]:
    started = time.perf_counter()
    if request.reset:
        policy.reset()
    return (policy.infer(request.obs),), time.perf_counter() - started


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
