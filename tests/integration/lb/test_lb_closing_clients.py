"""Clients that close after one request (``Connection: close``, HTTP/1.0) keep the builtin
engine's backend connections open (issue 15's benchmark: HAProxy reuses its server
connections for them, and a new backend connection per request doubled the cost of an
HTTPS client that makes one request per handshake).

Each client still gets its answer, told ``Connection: close``, and then the close; the
backend sees the requests on pooled connections, far fewer than the requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lb_harness import Backends, free_port, kill_engine
from test_lb_http_edges import exchange

from farmhand.dataplane import Backend
from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec

pytestmark = pytest.mark.slow

REQUESTS = 20


@pytest.fixture
async def one_backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[int, Any]]:
    state: Path = tmp_path_factory.mktemp("lbc")
    procs = Backends("http")
    port = free_port()
    plane = make_data_plane("closing", LbSpec(listen=f"127.0.0.1:{port}", workers=1), HealthSpec(interval="100ms"), state)
    try:
        (node,) = await procs.start(1, delay=0)
        await plane.ensure_running()
        await plane.set_backends([Backend(node.name, "127.0.0.1", node.port)])
        yield port, plane
        await plane.stop()
    finally:
        kill_engine(state / "lb" / "closing", "builtin")
        procs.cleanup()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
], ids=["http-1.0", "http-1.0-close", "http-1.1-close"])
async def test_closing_clients_share_pooled_backend_connections(one_backend: tuple[int, Any], request_bytes: bytes) -> None:
    port, plane = one_backend
    for _ in range(REQUESTS):
        reply, closed = await exchange(port, request_bytes)
        assert reply.status == 200 and reply.body.startswith(b"n")
        assert closed, "the proxy must close a closing client's connection after the answer"
        assert reply.headers.get(b"connection", b"").lower() == b"close"
    stats = await plane.stats()
    (backend,) = stats["backends"].values()
    assert backend["requests"] >= REQUESTS
    assert backend["connections"] < REQUESTS / 2, backend


async def test_kept_alive_clients_are_unchanged(one_backend: tuple[int, Any]) -> None:
    port, _ = one_backend
    reply, closed = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 200 and not closed
    assert b"connection" not in reply.headers
    reply, closed = await exchange(port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert reply.status == 200 and not closed
