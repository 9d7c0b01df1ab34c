"""HTTP health checks over one kept-alive connection per node: a GET, its status, nothing more.

Why not httpx: a check every second on every node is the controller's busiest work at rest,
and a general client (request and response objects, a pool, anyio cancel scopes, h11) spent
about half a millisecond of CPU per check, which with 30 nodes was a tenth of a core. Here a
check is one write and one read on a connection that stays open between checks (the node
sees one client, as it would from a load balancer), parsed by httptools (already used by
the builtin balancer) with no per-header callback.

Semantics kept from the httpx client it replaces: no redirects followed (a 301 is the status
compared), no proxy from the environment, the whole answer read (a body that never ends is a
timeout), and a connection the node closed while idle is opened again once without counting
as a failure.
"""

from __future__ import annotations

import asyncio

import httptools


class ProbeError(Exception):
    """The node's answer was not HTTP, or the connection ended before a whole answer."""


class _Connection(asyncio.Protocol):
    """One connection to a node; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answered_any = False
        """Whether a byte of the current answer has arrived (a reused connection that ends
        before that was closed by the node while idle: worth one more try)."""
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0
        self._headers_done = False

    def __repr__(self) -> str:
        return f"<ProbeConnection [closed: {self.closed} | busy: {self._waiter is not None}]>"

    def request(self, head: bytes) -> asyncio.Future[int]:
        """Send a request head; the future gives the answer's status once it is whole."""
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self.answered_any = False
        self._headers_done = False
        self.transport.write(head)
        return self._waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.abort()  # bytes nobody asked for (a 408 before an idle close): start afresh
            return
        self.answered_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._finish(ProbeError(f"not an HTTP answer ({error})"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done:
            self._finish(self._status)  # a body that ran until the close: the answer is whole
        else:
            self._finish(ProbeError("the connection closed before an answer"))

    # httptools callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_message_complete(self) -> None:
        keep = self._parser.should_keep_alive()
        self._finish(self._status)
        if not keep:
            self.abort()

    def _finish(self, result: int | Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, Exception):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)


class HttpProbe:
    """Checks one node over HTTP, keeping its connection open between checks."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._head = (f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: farmhand-check\r\n"
                      "Accept: */*\r\n\r\n").encode()
        self._connection: _Connection | None = None

    def __repr__(self) -> str:
        return f"<HttpProbe {self.host}:{self.port} [{self._connection!r}]>"

    async def status(self) -> int:
        """GET the path and return the answer's status. Raises ``OSError`` (cannot connect)
        or ``ProbeError``; a caller's timeout or cancellation drops the connection, whose
        state is then unknown."""
        done = False
        try:
            connection = self._connection
            if connection is not None and not connection.closed:
                try:
                    status = await connection.request(self._head)
                    done = True
                    return status
                except ProbeError:
                    if connection.answered_any:
                        raise
                    # closed by the node while idle: one fresh connection, as any client does
            connection = self._connection = await self._connect()
            status = await connection.request(self._head)
            done = True
            return status
        finally:
            if not done:
                self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.abort()
            self._connection = None

    async def _connect(self) -> _Connection:
        # asyncio and uvloop both set TCP_NODELAY on TCP connections: the small request
        # goes out at once
        _, protocol = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        return protocol
