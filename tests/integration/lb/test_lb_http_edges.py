"""The builtin engine's HTTP/1.1 handling at the edges: framing, limits, headers, errors.

One engine (one worker) and two backends serve the whole module; each test speaks raw
HTTP over its own connection, so what is checked is exactly the bytes a client gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import pytest
from lb_harness import Backends, free_port, kill_engine

from farmhand.dataplane import Backend
from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec

pytestmark = pytest.mark.slow

MAX_REQUEST = 4096


class Edge:
    def __init__(self, port: int, plane: Any, backends: list[Backend]) -> None:
        self.port = port
        self.plane = plane
        self.backends = backends


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    state: Path = tmp_path_factory.mktemp("lbe")
    procs = Backends("http")
    port = free_port()
    spec = LbSpec(listen=f"127.0.0.1:{port}", workers=1, connect_timeout="500ms", max_request_bytes=MAX_REQUEST)
    plane = make_data_plane("edge", spec, HealthSpec(interval="100ms"), state)
    try:
        nodes = asyncio.run(procs.start(2, delay=0))
        backends = [Backend(n.name, "127.0.0.1", n.port) for n in nodes]

        async def up() -> None:
            await plane.ensure_running()
            await plane.set_backends(backends)

        asyncio.run(up())
        yield Edge(port, plane, backends)
        asyncio.run(plane.stop())
    finally:
        kill_engine(state / "lb" / "edge", "builtin")
        procs.cleanup()


class Reply:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.done = False
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


async def exchange(port: int, raw: bytes) -> tuple[Reply, bool]:
    """Send ``raw``, read one response; also say whether the proxy then closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    reply = Reply()
    async with asyncio.timeout(10):
        while not reply.done:
            data = await reader.read(65536)
            assert data, "the proxy closed before answering"
            reply.parser.feed_data(data)
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
        except TimeoutError:
            closed = False
    writer.close()
    return reply, closed


async def test_forwarded_headers_and_a_spoofed_proto(edge: Edge) -> None:
    reply, _ = await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n")
    assert reply.status == 200
    assert reply.headers[b"x-seen-for"] == b"127.0.0.1"
    assert reply.headers[b"x-seen-proto"] == b"http"


async def test_bodies_by_length_and_chunked_reach_the_backend(edge: Edge) -> None:
    body = b"x" * 1000
    reply, _ = await exchange(edge.port, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + body)
    assert reply.headers[b"x-seen-body"] == b"1000"
    chunked = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    reply, _ = await exchange(edge.port, chunked)
    assert reply.headers[b"x-seen-body"] == b"8"


async def test_a_body_arriving_in_pieces(edge: Edge) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(b"POST /slow HTTP/1.1\r\nHo")
    await writer.drain()
    writer.write(b"st: x\r\nContent-Length: 6\r\n\r\nabc")
    await writer.drain()
    writer.write(b"def")
    reply = Reply()
    async with asyncio.timeout(10):
        while not reply.done:
            reply.parser.feed_data(await reader.read(65536))
    writer.close()
    assert reply.headers[b"x-seen-body"] == b"6"


async def test_pipelined_requests_are_answered_in_order(edge: Edge) -> None:
    raw = b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3))
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(raw + b"POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
    data = b""
    async with asyncio.timeout(10):
        while data.count(b"HTTP/1.1 200 OK") < 4 or not data.endswith(b"\n"):
            chunk = await reader.read(65536)
            assert chunk, data
            data += chunk
    writer.close()
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert data.count(b"X-Seen-Body: 2") == 1 and data.rindex(b"X-Seen-Body: 2") > data.rindex(b"X-Seen-Body: 0")


async def test_head_then_get_on_one_connection(edge: Edge) -> None:
    raw = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(raw)
    async with asyncio.timeout(10):
        head = b""
        while b"\r\n\r\n" not in head:
            head += await reader.read(65536)
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")  # no body follows
        writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = Reply()
        while not reply.done:
            reply.parser.feed_data(await reader.read(65536))
    writer.close()
    assert reply.status == 200 and reply.body.strip() in (b"n1", b"n2")


async def test_connection_close_and_http_1_0_close_after_the_answer(edge: Edge) -> None:
    reply, closed = await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.status == 200 and closed
    reply, closed = await exchange(edge.port, b"GET / HTTP/1.0\r\n\r\n")
    assert reply.status == 200 and closed


async def test_keep_alive_connections_stay_open(edge: Edge) -> None:
    reply, closed = await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 200 and not closed


async def test_limits_and_garbage_get_clean_errors(edge: Edge) -> None:
    big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + b"y" * 9000
    reply, closed = await exchange(edge.port, big)
    assert reply.status == 413 and closed
    reply, closed = await exchange(edge.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert reply.status == 400 and closed


async def test_stats_have_the_documented_keys(edge: Edge) -> None:
    await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    stats = await edge.plane.stats()
    for key in ("requests_per_s", "active_connections", "p95_ms", "waiting", "listeners", "backends"):
        assert key in stats
    listener = stats["listeners"][stats["listen"]]
    for key in ("connections", "requests", "bytes_in", "bytes_out", "errors", "retries", "active", "latency"):
        assert key in listener
    assert listener["requests"] >= 1 and listener["latency"]["p99_ms"] is not None
    assert set(stats["backends"]) == {b.name for b in edge.backends}


async def test_without_backends_requests_wait_then_get_503(edge: Edge) -> None:
    await edge.plane.set_backends([])
    try:
        reply, closed = await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 503 and closed
    finally:
        await edge.plane.set_backends(edge.backends)
    reply, _ = await exchange(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 200


# Issue 10 #8: what HAProxy 2.6 refuses (checked against the real binary), the builtin engine
# refuses too; what it refused before (the parser's refusals) it still refuses.
REFUSED = {
    "two Host lines": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "two Host lines, same value (RFC 9112 3.2)": (b"GET / HTTP/1.1\r\nhost: x\r\nHOST: x\r\n\r\n", 400),
    "identity before chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 422),
    "gzip then chunked on two lines": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 422),
    "chunked not last": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    "chunked twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "no chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    "absolute URI naming another host": (b"GET http://other/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "absolute URI naming another port": (b"GET http://x:81/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "absolute URI of another scheme": (b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "CONNECT to another host": (b"CONNECT y:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 400),
    "space before a colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "two different lengths": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "length and chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
}
ACCEPTED = {
    "absolute URI naming Host": b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute URI, other case": b"GET http://X/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute URI with the default port": b"GET http://x:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "https with its default port": b"GET https://x:443/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute URI with userinfo": b"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "OPTIONS *": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "Chunked in capitals": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_heads_haproxy_refuses_are_refused(edge: Edge, case: str) -> None:
    raw, status = REFUSED[case]
    reply, closed = await exchange(edge.port, raw)
    assert reply.status == status and closed


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_heads_haproxy_accepts_are_forwarded(edge: Edge, case: str) -> None:
    reply, _ = await exchange(edge.port, ACCEPTED[case])
    assert reply.status == 200
