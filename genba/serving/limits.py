"""A server-wide bound on the memory clients can make the server hold: bytes received and not yet answered.

websockets holds a message in up to three places before and while the handler has it: the frame being read (up to
max_size), frames queued behind the handler (max_queue), the message being answered. Each connection is bounded;
all of them together are not: 20 clients sending 8 MiB frames back to back took a server from 113 MB to 1.17 GB.

`ByteBudget` counts, per connection, the bytes read from its socket until the handler is done with the message they
carry (frame headers and control frames as soon as they are parsed). When the total passes the limit, the
connection holding the most is closed with 1013 (try again later), at once: the close frame is sent and the TCP
connection dropped without waiting for the client's reply, so its buffers go now. The client sending frames too
large or too fast is the one cut off, never a client sending small observations at its control rate. Closing rather
than pausing reading: a paused connection still holds its partial frame, and a client that stops mid-frame would
hold the budget until its idle timeout.

The count is exact without touching websockets' buffers: compression is off, so a client frame occupies its payload
plus a 6-, 8- or 14-byte header (client frames are always masked) on the wire.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import platform
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, CloseCode, Frame
from websockets.protocol import State

_M_MMAP_THRESHOLD = -3  # mallopt() parameter, glibc's malloc.h
BIG = 2**20  # a connection that held this much gets its garbage collected when it closes


def _header_bytes(payload: int) -> int:
    """RFC 6455 section 5.2: 2 bytes, the extended length (0, 2 or 8 bytes), the 4-byte mask of a client frame."""
    return 2 + (0 if payload < 126 else 2 if payload < 2**16 else 8) + 4


def return_freed_memory() -> None:
    """Have glibc give large freed blocks back to the system (process-wide; a no-op on other C libraries).

    glibc serves blocks over its mmap threshold with mmap and unmaps them when freed, but after freeing one it raises
    the threshold (up to 32 MiB), so later 8 MiB frames come from the heap, where fragmentation keeps them: a server
    that took a burst of large frames stayed 150-300 MB larger. A fixed threshold turns that adjustment off.
    """
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 2**20)


class ByteBudget:
    """Bytes in flight per connection and in total; `limit` bytes at most, enforced by closing the largest holder."""

    def __init__(self, limit: int, on_shed: Callable[[_BudgetedConnection, int], Any] = lambda ws, held: None) -> None:
        self.limit = limit
        self.total = 0
        self.held: dict[_BudgetedConnection, int] = {}
        self._on_shed = on_shed
        self._closing: set[asyncio.Task] = set()  # a task must be referenced until it is done
        self._collect_scheduled = False

    def connection_class(self) -> type[ServerConnection]:
        """The websockets connection class (serve(create_connection=...)) that reports to this budget."""
        return type("BudgetedConnection", (_BudgetedConnection,), {"budget": self})

    def add(self, ws: _BudgetedConnection, n: int) -> int:
        """Count n more bytes for ws; what it holds now."""
        self.held[ws] = held = self.held.get(ws, 0) + n
        self.total += n
        return held

    def release(self, ws: _BudgetedConnection, n: int) -> None:
        held = self.held.get(ws)
        if held is not None:
            n = min(n, held)  # the handshake's request bytes are not counted; a frame pipelined with it can overshoot
            self.held[ws] = held - n
            self.total -= n

    def forget(self, ws: _BudgetedConnection) -> None:
        self.total -= self.held.pop(ws, 0)

    def collect_soon(self) -> None:
        """One cyclic garbage collection after this round of events. A closed connection sits in reference cycles
        (websockets' connection, its tasks and exceptions) with every frame it still buffered: without this, dead
        connections kept 400 MB under bursts until the collector happened to run, which it rarely does in a server
        that allocates few objects. Only connections that held BIG bytes trigger it (a full collection: ~ms)."""
        if not self._collect_scheduled:
            self._collect_scheduled = True
            asyncio.get_running_loop().call_soon(self._collect)

    def _collect(self) -> None:
        self._collect_scheduled = False
        gc.collect()

    def enforce(self) -> None:
        while self.total > self.limit and self.held:
            ws = max(self.held, key=self.held.__getitem__)
            held = self.held[ws]
            self.forget(ws)
            ws.counted = False
            self._on_shed(ws, held)
            task = asyncio.get_running_loop().create_task(_close_now(ws))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


async def _close_now(ws: _BudgetedConnection) -> None:
    """Send the close frame (1013) and drop the connection without waiting for the client's: its buffers are freed
    at once, not after close_timeout (the point is to give the memory back)."""
    ws.transport.pause_reading()
    closing = asyncio.ensure_future(ws.close(CloseCode.TRY_AGAIN_LATER, "server busy: too many bytes in flight"))
    await asyncio.sleep(0)  # the close task's first step writes the frame
    ws.transport.close()  # flushes what is written, reads nothing more
    await closing


class _BudgetedConnection(ServerConnection):
    budget: ByteBudget  # set by ByteBudget.connection_class()
    counted = True  # False once closed for the budget
    held_big = False  # held BIG bytes at some point: collect its garbage when it is gone

    def data_received(self, data: bytes) -> None:
        if self.counted and self.protocol.state is State.OPEN:  # not the HTTP request of the handshake
            self.held_big |= self.budget.add(self, len(data)) >= BIG
        super().data_received(data)
        self.budget.enforce()

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame):
            payload = len(event.data)
            # A data frame's payload stays counted until the handler is done with its message; the rest is gone now.
            self.budget.release(self, _header_bytes(payload) + (0 if event.opcode in DATA_OPCODES else payload))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.budget.forget(self)
        if self.held_big:
            self.budget.collect_soon()
