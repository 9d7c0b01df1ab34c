"""Issue 10 #7: a deadline for the whole request head, like HAProxy's ``timeout
http-request``. A slowloris client sending one byte at a time resets the idle timer with
every byte; before the fix it was never dropped. Now it gets 408 once the head deadline
passes, on a new connection and on a kept-alive one alike."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from lb_harness import Backends

from farmhand.dataplane import Backend

pytestmark = pytest.mark.slow

GIVE_UP = 20.0
"""The client trickles for at most this long; the head deadline under test is 1 s."""


async def trickle_until_answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Send a never-ending head one byte at a time, each after waiting 0.2 s for an answer."""
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: ")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GIVE_UP
    for _ in itertools.count():
        try:
            return await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            pass
        assert loop.time() < deadline, "the trickling head was never cut off"
        writer.write(b"a")
        await writer.drain()
    raise AssertionError("unreachable")


@pytest.fixture
async def slow_head_plane(plane_factory: Callable[..., Any], backends_factory: Callable[[str], Backends]) -> Any:
    [node] = await backends_factory("http").start(1)
    plane = plane_factory("builtin", "http", workers=1, http_request_timeout="1s", client_timeout="30s")
    await plane.ensure_running()
    await plane.set_backends([Backend(node.name, "127.0.0.1", node.port)])
    return plane


async def test_a_trickling_head_on_a_new_connection_gets_408(slow_head_plane: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", slow_head_plane.settings.listen_port)
    try:
        answer = await trickle_until_answered(reader, writer)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:60]


async def test_a_trickling_head_after_a_kept_alive_request_gets_408(slow_head_plane: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", slow_head_plane.settings.listen_port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert first.startswith(b"HTTP/1.1 200 ")
        length = int(first.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), 10)
        answer = await trickle_until_answered(reader, writer)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:60]
