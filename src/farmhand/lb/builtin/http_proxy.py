"""HTTP/1.1 proxying on asyncio protocols: keep-alive both sides, raw bytes through.

How a request flows (FIELD-NOTES, "what made that proxy fast"):

1. ``ClientSide`` feeds received bytes to an httptools parser whose only callbacks mark
   where the head and the message end; the raw head gets X-Forwarded-For/-Proto added and
   goes, with any body bytes, to the backend in one write.
2. A ``BackendSide`` (``http_backend``) from the backend's keep-alive pool (most recent first) or a new
   connection carries it; response bytes are written to the client as they arrive and a
   second parser only finds the response's end, after which the connection returns to the
   pool.
3. Failures before the first response byte go through ``retry.may_retry``: another backend,
   each at most once; connect failures and resets eject the backend (``Context.eject``).
   A *pooled* connection that fails so is first retried once on a fresh connection to the
   same backend, without ejecting it: the backend most likely closed it while it sat idle
   (its keep-alive timeout), which says nothing about its health (issue 10 #9).

Nothing on this path formats strings, logs, or arms timers; the worker's sweep enforces
timeouts from the tick stamps kept here. Pipelined requests are served one at a time in
order (rare, so their split uses a slower path in ``messages``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httptools

from farmhand.lb.builtin import messages
from farmhand.lb.builtin.context import Context
from farmhand.lb.builtin.histogram import bucket_of
from farmhand.lb.builtin.http_backend import BackendSide
from farmhand.lb.builtin.retry import IDEMPOTENT_METHODS, Failure, ejects, may_retry
from farmhand.lb.builtin.table import READY, Slot

REPLAY_LIMIT = 256 << 10
"""Request bytes kept for a retry; a longer request is sent once (as HAProxy, one buffer)."""
PAUSE_AT = 256 << 10
"""Pipelined or pre-connect bytes held before the client is paused."""

_perf = time.perf_counter
_RequestParser = httptools.HttpRequestParser
_ParserError = httptools.HttpParserError
_Upgrade = httptools.HttpParserUpgrade
_BLANK = (b"\r", b"\n")
_HEAD_END = messages.HEAD_END
_suspect = messages.suspect
_XFP = b"x-forwarded-proto"


class ClientSide(asyncio.Protocol):
    """One client connection; serves its requests one after another."""

    __slots__ = (
        "ctx", "transport", "parser", "xff", "key", "buf", "begun", "head_seen", "done",
        "keep_alive", "method", "upgrade", "out", "req_bytes", "backend", "tried", "attempts",
        "t0", "stamp", "pending", "in_flight", "waiting_since", "tunnel", "closed", "fresh_retry",
        "head_at", "tls", "held_open",
    )

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.transport: Any = None
        self.parser = _RequestParser(self)
        self.buf = b""
        self.begun = 0
        self.head_seen = False
        self.done = False
        self.keep_alive = True
        self.method = b""
        self.upgrade = False
        self.out: Any = None
        self.req_bytes = 0
        self.backend: BackendSide | None = None
        self.tried: list[Slot] | None = None
        self.attempts = 0
        self.fresh_retry = False
        self.t0 = 0.0
        self.stamp = ctx.tick
        self.pending: list[bytes] | None = None
        self.in_flight = False
        self.waiting_since: int | None = None
        self.tunnel = False
        self.closed = False
        self.xff = b""
        self.tls = False
        self.held_open = False
        """This request is the client's last but its head asked the backend to stay open
        (``messages.backend_keep_open``): the backend connection goes back to the pool."""
        self.key = 0
        self.head_at = ctx.tick
        """Tick at which the head being awaited began (accept, or its first byte after an
        idle keep-alive wait); -1 while idle between requests. The sweep's head deadline."""

    # -- parser callbacks (only these three: each callback defined costs a call per request)
    def on_message_begin(self) -> None:
        self.begun += 1

    def on_headers_complete(self) -> None:
        if not self.head_seen:
            self.head_seen = True
            parser = self.parser
            self.keep_alive = parser.should_keep_alive()
            self.method = parser.get_method()

    def on_message_complete(self) -> None:
        self.done = True

    # -- asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else "unknown"
        self.xff = messages.forwarded_lines(ip, "https" if self.tls else "http")
        if ctx.settings.balance == "source":
            from farmhand.lb.builtin.balance import hash64

            self.key = hash64(ip)
        ctx.clients.add(self)
        listener = ctx.listener
        listener.connections += 1
        listener.active += 1

    def data_received(self, data: bytes) -> None:
        self.stamp = self.ctx.tick
        if self.in_flight:
            if self.tunnel:
                backend = self.backend
                if backend is not None:
                    backend.transport.write(data)
                return
            if self.done:
                self._hold(data)
                return
            self._body(data)
            return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """Bytes of a request not yet dispatched; a whole head dispatches it (hot path)."""
        buf = self.buf + data if self.buf else data
        self.buf = buf
        try:
            self.parser.feed_data(data)
        except _Upgrade:
            self.upgrade = True
            self.done = True
        except _ParserError:
            self.ctx.listener.errors += 1
            self._reply_and_close(messages.BAD_REQUEST)
            return
        if not self.head_seen:
            if self.head_at < 0:
                self.head_at = self.ctx.tick
            if len(buf) > messages.MAX_HEAD:
                self._reply_and_close(messages.HEAD_TOO_LARGE)
            return
        if self.begun > 1:
            self._split_pipelined(buf)
            buf = self.buf
        self.buf = b""
        if buf[:1] in _BLANK:
            buf = buf.lstrip(b"\r\n")
        size = len(buf)
        self.req_bytes = size
        if size > self.ctx.max_request:
            self._reply_and_close(messages.TOO_LARGE)
            return
        end = buf.find(_HEAD_END)
        head = buf[:end]
        lower = head.lower()
        if _suspect(head, lower) and (refused := messages.refusal(head, lower)) is not None:
            self.ctx.listener.errors += 1
            self._reply_and_close(refused)
            return
        front = self.ctx.front
        if front is not None and not self.tls and (answer := front(head)) is not None:
            self._reply_and_close(answer)
            return
        if not self.keep_alive and not self.upgrade:
            head = messages.backend_keep_open(head, lower)
            self.held_open = True
        else:
            self.held_open = False
        if _XFP in lower:
            head = messages.rewrite_head(head, b"")
        self.out = b"".join((head, self.xff, buf[end:]))
        self.in_flight = True
        self.attempts = 0
        self.tried = None
        self.fresh_retry = False
        self.t0 = _perf()
        self.dispatch()

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except _Upgrade:
            self.upgrade = True
            self.done = True
        except _ParserError:
            self.ctx.listener.errors += 1
            self._reply_and_close(messages.BAD_REQUEST)
            return False
        return True

    def _split_pipelined(self, buf: bytes) -> None:
        """A second request began in the same bytes: keep it for after this one's answer."""
        length = messages.first_request_length(buf)
        if length is None:  # cannot tell where the first ends: serve it, then close
            self.keep_alive = False
            return
        self.buf = buf[:length]
        self.done = True
        rest = buf[length:]
        if rest.strip(b"\r\n"):
            self._hold(rest)
        self.parser = _RequestParser(self)

    def _hold(self, data: bytes) -> None:
        pending = self.pending
        if pending is None:
            self.pending = pending = []
        pending.append(data)
        if sum(len(p) for p in pending) > PAUSE_AT:
            self.transport.pause_reading()

    def _body(self, data: bytes) -> None:
        """More bytes of a request already dispatched (a body on its way)."""
        self.req_bytes += len(data)
        if self.req_bytes > self.ctx.max_request:
            self._abort_exchange(messages.TOO_LARGE)
            return
        begun = self.begun
        if not self._feed(data):
            return
        if self.begun > begun and self.begun > 1 and self.out is not None:
            whole = bytes(self.out) + data
            length = messages.first_request_length(whole)
            if length is not None:
                cut = len(data) - (len(whole) - length)
                data, rest = data[:cut], data[cut:]
                self.parser = _RequestParser(self)
                self._hold(rest)
            else:
                self.keep_alive = False
        backend = self.backend
        out = self.out
        if backend is not None and backend.transport is not None:
            backend.transport.write(data)
            if out is not None:
                if len(out) + len(data) > REPLAY_LIMIT:
                    self.out = None
                else:
                    if not isinstance(out, bytearray):
                        self.out = out = bytearray(out)
                    out += data
        else:
            if not isinstance(out, bytearray):
                self.out = out = bytearray(out)
            out += data
            if len(out) > PAUSE_AT:
                self.transport.pause_reading()

    # -- dispatching
    def dispatch(self) -> None:
        """Send the current request to a backend not tried yet, or wait for one."""
        ctx = self.ctx
        slot = ctx.table.balancer.pick(self.key, self.tried)
        if slot is None:
            if self.tried:
                self._fail(messages.BAD_GATEWAY)
            else:
                ctx.wait_for_backend(self)
            return
        self.attempts += 1
        idle = slot.idle
        while idle:
            backend = idle.pop()
            if not backend.transport.is_closing():
                backend.attach(self)
                return
        self._connect(slot)

    def _connect(self, slot: Slot) -> None:
        """Carry the current request on a new connection to ``slot``."""
        ctx = self.ctx
        backend = BackendSide(ctx, slot)
        backend.client = self
        self.backend = backend
        slot.active += 1
        backend.stamp = ctx.tick
        ctx.start_connect(backend.connect())

    def response_done(self, backend: BackendSide, closing: bool) -> None:
        """The backend's response ended: account, pool or close it, go on with the client."""
        slot = backend.slot
        slot.active -= 1
        slot.requests += 1
        slot.bytes_in += self.req_bytes
        slot.bytes_out += backend.got
        slot.hist[bucket_of(_perf() - self.t0)] += 1
        # A closing client's request went to the backend asking it to stay open
        # (``held_open``); any other "Connection: close" reached it as sent: never pool that.
        pooled = backend.keep and not closing and not self.upgrade and (self.keep_alive or self.held_open)
        backend.release(pooled and slot.state == READY)
        self.backend = None
        self.in_flight = False
        self.out = None
        self.tried = None
        if not (pooled and self.keep_alive):
            self.transport.close()
            return
        self.head_seen = False
        self.done = False
        self.begun = 0
        self.head_at = -1
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.transport.resume_reading()
            self._receive(b"".join(pending))

    def backend_failed(self, backend: BackendSide, failure: Failure) -> None:
        """The attempt failed before any response byte: retry elsewhere or answer 502."""
        slot = backend.slot
        slot.active -= 1
        slot.errors += 1
        self.backend = None
        if backend.reused:
            # A pooled connection the backend closed while it sat idle (keep-alive timeout)
            # says nothing about the backend: try it again once, on a fresh connection.
            if self.closed:
                return
            if not self.fresh_retry and may_retry(
                failure,
                idempotent=self.method in IDEMPOTENT_METHODS and not self.upgrade,
                replayable=self.out is not None,
                response_started=False,
                attempts=1,
            ):
                self.fresh_retry = True
                slot.retries += 1
                self.ctx.listener.retries += 1
                self._connect(slot)
                return
        elif ejects(failure):
            self.ctx.eject(slot)
        if self.closed:
            return
        tried = self.tried
        if tried is None:
            self.tried = tried = []
        tried.append(slot)
        if may_retry(
            failure,
            idempotent=self.method in IDEMPOTENT_METHODS and not self.upgrade,
            replayable=self.out is not None,
            response_started=False,
            attempts=self.attempts,
        ):
            slot.retries += 1
            self.ctx.listener.retries += 1
            self.dispatch()
        elif failure is Failure.RESPONSE_TIMEOUT:
            self._fail(messages.GATEWAY_TIMEOUT)
        else:
            self._fail(messages.BAD_GATEWAY)

    def start_tunnel(self) -> None:
        """The backend switched protocols (101): relay raw bytes both ways until either closes."""
        self.tunnel = True
        self.keep_alive = False
        pending = self.pending
        if pending is not None and self.backend is not None:
            self.pending = None
            self.backend.transport.write(b"".join(pending))
            self.transport.resume_reading()

    def _fail(self, response: bytes) -> None:
        self.ctx.listener.errors += 1
        self.in_flight = False
        self._reply_and_close(response)

    def _abort_exchange(self, response: bytes | None) -> None:
        backend = self.backend
        if backend is not None:
            self.backend = None
            backend.slot.active -= 1
            backend.client = None
            backend.abort()
        self.in_flight = False
        if response is not None:
            self.ctx.listener.errors += 1
            self._reply_and_close(response)
        else:
            self.transport.abort()

    def _reply_and_close(self, response: bytes) -> None:
        transport = self.transport
        if not transport.is_closing():
            transport.write(response)
            transport.close()

    # -- sweep (one call per tick per connection)
    def sweep(self, tick: int) -> None:
        ctx = self.ctx
        if self.waiting_since is not None:
            if tick - self.waiting_since > ctx.connect_ticks:
                self.waiting_since = None
                self._fail(messages.UNAVAILABLE)
            return
        backend = self.backend
        if backend is not None:
            if not self.tunnel and tick - backend.stamp > (
                ctx.connect_ticks if backend.transport is None else ctx.server_ticks
            ):
                backend.timed_out()
            return
        if self.in_flight:
            return
        head_at = self.head_at
        if tick - self.stamp > ctx.client_ticks or (head_at >= 0 and tick - head_at > ctx.head_ticks):
            # Idle too long, or the head's deadline passed however the bytes trickled in.
            if self.buf:
                ctx.listener.errors += 1
                self._reply_and_close(messages.REQUEST_TIMEOUT)
            else:
                self.transport.close()

    # -- flow control: a slow client pauses its backend, and the other way round
    def pause_writing(self) -> None:
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.pause_reading()

    def resume_writing(self) -> None:
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.resume_reading()

    def eof_received(self) -> bool | None:
        if self.tunnel and self.backend is not None and self.backend.transport.can_write_eof():
            self.backend.transport.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ctx = self.ctx
        ctx.clients.discard(self)
        ctx.listener.active -= 1
        self.waiting_since = None
        if self.in_flight and self.backend is not None:
            backend = self.backend
            self.backend = None
            backend.slot.active -= 1
            backend.client = None
            backend.abort()


class TlsClientSide(ClientSide):
    """A client of the HTTPS listener: the same proxying over the TLS transport, with
    ``X-Forwarded-Proto: https`` and, if asked, HSTS on every answer (``http_backend``)."""

    __slots__ = ()

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.tls = True
