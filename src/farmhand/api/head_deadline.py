"""A deadline for a whole request head on the API's connections (issue 10.16).

Why: uvicorn bounds only the idle time between two requests (``timeout_keep_alive``), and
its timer stops at the first byte of the next request. A client that opens a connection and
sends nothing, or trickles a header a byte a second, was held for ever; a few hundred of them
use up the controller's file descriptors. HAProxy (``timeout http-request``) and nginx
(``client_header_timeout``) give the whole head a deadline; so does this.

How: a subclass of uvicorn's httptools protocol. The clock starts when a connection opens,
when a request's first byte comes, and when a response ends; it stops when a head is
complete. When it runs out while a head is awaited, the client gets ``408`` and the
connection closes. A head larger than ``MAX_HEAD`` is refused with ``431`` the same way,
since a fast client could otherwise fill memory within the deadline. A request whose head
is in is never cut by this clock (an event stream may last for hours).

This leans on uvicorn's parser callbacks (``on_message_begin``, ``on_url``, ``on_header``,
``on_headers_complete``, ``on_response_complete``); the integration tests prove it against
the uvicorn farmhand pins.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0
"""Seconds a client has to send a whole request head (HAProxy's and nginx's usual figure)."""
MAX_HEAD = 64 * 1024
"""Bytes a request line and its headers may take together."""


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for request heads."""

    head_timeout = HEAD_TIMEOUT
    max_head = MAX_HEAD

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    # parser callbacks: once refused, the rest of the bytes already fed are ignored

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._start_head_clock()

    def on_url(self, url: bytes) -> None:
        if self._count_head(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count_head(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._stop_head_clock()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._start_head_clock()

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its own clock, not this one
        self._refuse(408, "Request Timeout", f"the request head did not come within {self.head_timeout:g} s")

    def _count_head(self, size: int) -> bool:
        """Count head bytes; ``False`` once the request is refused (too large, or before)."""
        if self._refused:
            return False
        self._head_bytes += size
        if self._head_bytes > self.max_head:
            self._refuse(431, "Request Header Fields Too Large", f"the request head is over {self.max_head} bytes")
            return False
        return True

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer and close, without starting the app (the head is not complete)."""
        self._refused = True
        self._stop_head_clock()
        body = message.encode()
        self.transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()


def head_deadline_protocol(head_timeout: float = HEAD_TIMEOUT, max_head: int = MAX_HEAD) -> type[HeadDeadlineProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": head_timeout, "max_head": max_head})
