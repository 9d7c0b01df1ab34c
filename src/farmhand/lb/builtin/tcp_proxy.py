"""The tcp-mode relay: bytes in, bytes out, on asyncio protocols (no streams, no copies).

A client connection gets a backend picked by the balancer; a refused or timed-out connect
ejects that backend and tries another (each once). Until the backend answers the connect,
the client's first bytes are held (and reading paused past ``PAUSE_AT``). Then each chunk
is written straight to the other side; write-buffer pressure on one side pauses reading on
the other, and a half-close (EOF) is passed on so protocols that shut down their write side
keep working.

Latency in tcp mode is the time from accept to the backend's first byte (for
request/response protocols that is the first answer; for server-speaks-first protocols
the greeting).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from farmhand.lb.builtin.context import Context
from farmhand.lb.builtin.histogram import bucket_of
from farmhand.lb.builtin.retry import ejects, failure_of, may_retry
from farmhand.lb.builtin.table import Slot

PAUSE_AT = 256 << 10
_perf = time.perf_counter


class TcpClient(asyncio.Protocol):
    __slots__ = (
        "ctx", "transport", "peer", "early", "key", "tried", "attempts", "t0", "closed",
        "eof", "stamp", "waiting_since", "in_flight", "write_peer", "sent",
    )

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.transport: Any = None
        self.peer: TcpBackend | None = None
        self.early: list[bytes] = []
        self.key = 0
        self.tried: list[Slot] | None = None
        self.attempts = 0
        self.t0 = 0.0
        self.closed = False
        self.eof = False
        self.stamp = ctx.tick
        self.waiting_since: int | None = None
        self.in_flight = True
        self.write_peer: Any = None
        """The backend transport's bound ``write`` once connected (saves lookups per chunk)."""
        self.sent = 0
        """Bytes relayed to the backend; folded into the backend's counters when it closes."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        ctx = self.ctx
        ctx.clients.add(self)
        listener = ctx.listener
        listener.connections += 1
        listener.active += 1
        self.t0 = _perf()
        if ctx.settings.balance == "source":
            from farmhand.lb.builtin.balance import hash64

            peer = transport.get_extra_info("peername")
            self.key = hash64(peer[0] if peer else "")
        self.dispatch()

    def dispatch(self) -> None:
        ctx = self.ctx
        slot = ctx.table.balancer.pick(self.key, self.tried)
        if slot is None:
            if self.tried:
                self._give_up()
            else:
                ctx.wait_for_backend(self)
            return
        self.attempts += 1
        backend = TcpBackend(self, slot)
        slot.active += 1
        ctx.start_connect(backend.connect())

    def connected(self, backend: TcpBackend) -> None:
        self.peer = backend
        self.write_peer = backend.transport.write
        if self.early:
            early = b"".join(self.early)
            self.early = []
            backend.transport.write(early)
            self.sent += len(early)
            self.transport.resume_reading()
        if self.eof and backend.transport.can_write_eof():
            backend.transport.write_eof()

    def connect_failed(self, backend: TcpBackend, error: BaseException) -> None:
        slot = backend.slot
        slot.active -= 1
        slot.errors += 1
        failure = failure_of(error, connected=False)
        if ejects(failure):
            self.ctx.eject(slot)
        if self.closed:
            return
        tried = self.tried
        if tried is None:
            self.tried = tried = []
        tried.append(slot)
        if may_retry(failure, idempotent=True, replayable=True, response_started=False, attempts=self.attempts):
            slot.retries += 1
            self.ctx.listener.retries += 1
            self.dispatch()
        else:
            self._give_up()

    def _give_up(self) -> None:
        self.ctx.listener.errors += 1
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        write = self.write_peer
        if write is not None:
            write(data)
            self.sent += len(data)
            return
        self.early.append(data)
        if sum(len(d) for d in self.early) > PAUSE_AT:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            if peer.eof:
                return False
        return True

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()

    def sweep(self, tick: int) -> None:
        if self.waiting_since is not None and tick - self.waiting_since > self.ctx.connect_ticks:
            self.waiting_since = None
            self._give_up()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.waiting_since = None
        ctx = self.ctx
        ctx.clients.discard(self)
        ctx.listener.active -= 1
        peer = self.peer
        if peer is not None:
            self.peer = None
            self.write_peer = None
            peer.transport.close()


class TcpBackend(asyncio.Protocol):
    __slots__ = ("client", "slot", "transport", "first", "eof", "write_client", "received", "source")

    def __init__(self, client: TcpClient, slot: Slot) -> None:
        self.client: TcpClient | None = client
        self.source = client
        self.slot = slot
        self.transport: Any = None
        self.first = True
        self.eof = False
        self.write_client: Any = None
        self.received = 0
        """Bytes relayed to the client; folded into the backend's counters when it closes."""

    def relayed(self) -> tuple[int, int]:
        """Bytes relayed so far, (to the backend, to the client), for live stats."""
        return self.source.sent, self.received

    async def connect(self) -> None:
        ctx = self.client.ctx if self.client is not None else None
        if ctx is None:
            return
        try:
            async with asyncio.timeout(ctx.connect_timeout):
                await ctx.loop.create_connection(lambda: self, self.slot.host, self.slot.port)
        except (OSError, TimeoutError) as error:
            client = self.client
            self.client = None
            if client is not None:
                client.connect_failed(self, error)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        slot = self.slot
        slot.conns.add(self)
        slot.connections += 1
        client = self.client
        if client is None or client.closed:
            transport.close()
            return
        self.write_client = client.transport.write
        client.connected(self)

    def data_received(self, data: bytes) -> None:
        write = self.write_client
        if write is None:
            return
        write(data)
        self.received += len(data)
        if self.first:
            self.first = False
            slot = self.slot
            slot.requests += 1
            slot.hist[bucket_of(_perf() - self.source.t0)] += 1

    def eof_received(self) -> bool:
        self.eof = True
        client = self.client
        if client is not None:
            if client.transport.can_write_eof():
                client.transport.write_eof()
            if client.eof:
                return False
        return True

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        slot = self.slot
        slot.conns.discard(self)
        slot.active -= 1
        slot.bytes_in += self.source.sent
        slot.bytes_out += self.received
        self.source.sent = self.received = 0
        client = self.client
        self.write_client = None
        if client is not None:
            self.client = None
            if exc is not None:
                slot.errors += 1
                client.transport.abort()
            else:
                client.transport.close()
