"""HTTPS through a real builtin engine on its own TLS transport: a large upload over a
kept-alive connection arrives whole and the connection serves on; a client that leaves in
the middle of a handshake costs the worker nothing (issue 15)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.integration.farmkit import free_port
from tests.integration.lb.lb_harness import Backends, kill_engine

from farmhand.dataplane import Backend
from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec

pytestmark = pytest.mark.slow


@pytest.fixture
async def https_plane(short_tmp: Path) -> AsyncIterator[tuple[Any, int, ssl.SSLContext]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("site.test", key_type=trustme.KeyType.ECDSA)
    cert, key = short_tmp / "site.crt", short_tmp / "site.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    tls_port = free_port()
    spec = LbSpec.model_validate({
        "listen": f"127.0.0.1:{free_port()}", "engine": "builtin", "workers": 1, "drain_timeout": "2s",
        "connect_timeout": "1s", "tls": {"listen": f"127.0.0.1:{tls_port}", "cert": str(cert), "key": str(key)},
    })
    plane = make_data_plane("web", spec, HealthSpec.model_validate({"type": "http", "interval": "100ms", "rise": 1}), short_tmp)
    backends = Backends("http")
    try:
        await plane.ensure_running()
        nodes = await backends.start(1)
        await plane.set_backends([Backend(n.name, "127.0.0.1", n.port) for n in nodes])
        trust = ssl.create_default_context()
        ca.configure_trust(trust)
        yield plane, tls_port, trust
    finally:
        try:
            await plane.stop()
        except BaseException:
            kill_engine(short_tmp / "lb" / "web", "builtin")
            raise
        finally:
            backends.cleanup()


async def answer(reader: asyncio.StreamReader) -> dict[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 200"), lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers[b"content-length"]))
    return headers


async def test_large_upload_over_https_then_the_connection_serves_on(https_plane: Any) -> None:
    _, port, trust = https_plane
    size = 3 << 20
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname="site.test")
    try:
        writer.write(b"POST /up HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size >> 16):
            writer.write(b"u" * (1 << 16))
            await writer.drain()
        headers = await answer(reader)
        assert headers[b"x-seen-body"] == str(size).encode()
        assert headers[b"x-seen-proto"] == b"https"
        writer.write(b"GET /again HTTP/1.1\r\nHost: site.test\r\n\r\n")
        await answer(reader)
    finally:
        writer.close()


async def test_clients_leaving_mid_handshake_do_not_disturb_the_worker(https_plane: Any) -> None:
    plane, port, trust = https_plane
    hello = ssl.MemoryBIO()
    probe = trust.wrap_bio(ssl.MemoryBIO(), hello, server_hostname="site.test")
    try:
        probe.do_handshake()
    except ssl.SSLWantReadError:
        pass
    first_flight = hello.read()
    for cut in (0, 10, len(first_flight) // 2, len(first_flight)):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first_flight[:cut])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname="site.test")
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
        await answer(reader)
    finally:
        writer.close()
    assert (await plane.stats()).get("worker_restarts", 0) == 0
