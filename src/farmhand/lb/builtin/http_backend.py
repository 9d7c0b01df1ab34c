"""The backend side of HTTP proxying: one keep-alive connection to a backend.

It carries one client's request at a time (``http_proxy.ClientSide`` hands it the request
bytes), writes response bytes to that client as they arrive, and lets a parser with two
callbacks find where the response ends; then the connection goes back to its backend's pool
(most recently used first) or closes. Failures before the first response byte go back to the
client side, which decides on a retry (``retry``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools

from farmhand.lb.builtin.context import Context
from farmhand.lb.builtin.messages import closing_response, with_header_line
from farmhand.lb.builtin.retry import Failure, failure_of
from farmhand.lb.builtin.table import READY, Slot

if TYPE_CHECKING:
    from farmhand.lb.builtin.http_proxy import ClientSide

_ResponseParser = httptools.HttpResponseParser
_ParserError = httptools.HttpParserError
_Upgrade = httptools.HttpParserUpgrade


class BackendSide(asyncio.Protocol):
    """One connection to a backend, serving one client's request at a time."""

    __slots__ = (
        "ctx", "slot", "transport", "parser", "client", "got", "keep", "complete", "interim",
        "stamp", "reused", "tunnel", "head_only",
    )

    def __init__(self, ctx: Context, slot: Slot) -> None:
        self.ctx = ctx
        self.slot = slot
        self.transport: Any = None
        self.parser = _ResponseParser(self)
        self.client: ClientSide | None = None
        self.got = 0
        self.keep = True
        self.complete = False
        self.interim = False
        self.stamp = 0
        self.reused = False
        self.tunnel = False
        self.head_only = False

    async def connect(self) -> None:
        ctx = self.ctx
        slot = self.slot
        try:
            async with asyncio.timeout(ctx.connect_timeout):
                await ctx.loop.create_connection(lambda: self, slot.host, slot.port)
        except (OSError, TimeoutError) as error:
            client = self.client
            self.client = None
            if client is not None:
                client.backend_failed(self, failure_of(error, connected=False))
            else:
                slot.errors += 1
                if failure_of(error, connected=False) in (Failure.REFUSED, Failure.CONNECT_TIMEOUT):
                    self.ctx.eject(slot)

    def attach(self, client: ClientSide) -> None:
        """Reuse this pooled connection for ``client``'s request."""
        self.client = client
        self.reused = True
        client.backend = self
        self.slot.active += 1
        self.stamp = self.ctx.tick
        self.head_only = client.method == b"HEAD"
        self.transport.write(client.out)

    def release(self, keep: bool) -> None:
        self.client = None
        self.got = 0
        self.complete = False
        if self.head_only:
            self.parser = _ResponseParser(self)
            self.head_only = False
        if keep:
            self.stamp = self.ctx.tick
            self.slot.idle.append(self)
        else:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self) -> None:
        client = self.client
        self.client = None
        connected = self.transport is not None
        if client is not None:
            if self.got == 0:
                client.backend_failed(
                    self, Failure.RESPONSE_TIMEOUT if connected else Failure.CONNECT_TIMEOUT
                )
            else:
                client._abort_exchange(None)
        self.abort()

    # -- parser callbacks
    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                self.tunnel = True
            else:
                self.interim = True
            return
        self.keep = parser.should_keep_alive()
        if self.head_only or status == 204 or status == 304:
            self.complete = True

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        else:
            self.complete = True

    # -- asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        slot = self.slot
        slot.conns.add(self)
        slot.connections += 1
        client = self.client
        if client is None or client.closed:
            self.client = None
            self.release(slot.state == READY and not slot.ejected)
            return
        self.stamp = self.ctx.tick
        self.head_only = client.method == b"HEAD"
        transport.write(client.out)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # bytes on an idle connection: the backend broke the protocol
            self.transport.abort()
            return
        self.stamp = self.ctx.tick
        got = self.got
        self.got = got + len(data)
        if got == 0 and (client.held_open or client.tls and self.ctx.hsts is not None):
            client.transport.write(first_bytes(data, client.held_open, self.ctx.hsts if client.tls else None))
        else:
            client.transport.write(data)
        if self.tunnel:
            return
        try:
            self.parser.feed_data(data)
        except _Upgrade:
            self.tunnel = True
        except _ParserError:
            self.client = None
            client._abort_exchange(None)
            return
        if self.tunnel:
            client.start_tunnel()
        elif self.complete:
            client.response_done(self, False)
        elif self.got > self.ctx.max_response:
            self.client = None
            client._abort_exchange(None)

    def pause_writing(self) -> None:
        client = self.client
        if client is not None:
            client.transport.pause_reading()

    def resume_writing(self) -> None:
        client = self.client
        if client is not None:
            client.transport.resume_reading()

    def eof_received(self) -> bool | None:
        client = self.client
        if self.tunnel and client is not None and client.transport.can_write_eof():
            client.transport.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        slot = self.slot
        slot.conns.discard(self)
        client = self.client
        if client is None:
            idle = slot.idle
            if self in idle:
                idle.remove(self)
            return
        self.client = None
        if self.tunnel:
            client.backend = None
            slot.active -= 1
            client.transport.close()
        elif self.got == 0:
            client.backend_failed(self, failure_of(exc, connected=True))
        elif self.parser is not None and exc is None:
            # The response had no length (ends at close) or was cut: either way the client
            # gets the same end the backend gave, and this connection is not reused.
            client.response_done(self, True)
        else:
            client._abort_exchange(None)


def first_bytes(data: bytes, closing: bool, hsts: bytes | None) -> bytes:
    """A response's first bytes as the client gets them: ``Connection: close`` for a client
    whose request was its last (``ClientSide.held_open``), HSTS on the HTTPS listener."""
    if closing:
        data = closing_response(data)
    return data if hsts is None else with_header_line(data, hsts)
