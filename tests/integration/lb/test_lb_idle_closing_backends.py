"""Issue 10 #9: zero failed requests against backends that close idle keep-alive connections.

Python's ``http.server`` (like gunicorn, Node or uvicorn after their keep-alive timeouts)
closes a connection that sat idle; the builtin engine pools backend connections, so now and
then it sends a request on a connection the backend is closing at that moment. Before the
fix that request got a 502 when no other backend was left to try (about one in 1,000 here
with a single backend). A request that fails so on a pooled connection is now tried again on
a fresh connection to the same backend.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lb_harness import HttpLoad, free_port

from farmhand.dataplane import Backend

pytestmark = pytest.mark.slow

BACKEND = Path(__file__).with_name("idle_closing_backend.py")
REQUESTS = 20_000


@pytest.fixture
def idle_closing_backend() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BACKEND), "--port", str(port), "--name", "only", "--idle", "0.003"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_no_request_fails_when_the_backend_closes_idle_connections(
    plane_factory: Callable[..., Any], idle_closing_backend: int
) -> None:
    plane = plane_factory("builtin", "http", workers=2)
    await plane.ensure_running()
    await plane.set_backends([Backend("only", "127.0.0.1", idle_closing_backend)])
    load = HttpLoad(plane.settings.listen_port, concurrency=4, limit=REQUESTS)
    load.start()
    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*load.tasks)
    finally:
        stats = await load.stop()
    assert stats.ok + stats.failed >= REQUESTS
    assert stats.failed == 0, stats.errors[:5]
    backend = (await plane.stats())["backends"]["only"]
    assert not backend["ejected"], "a connection the backend closed while idle must not eject it"
