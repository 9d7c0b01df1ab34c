"""HTTP checks over a kept-alive connection, against real servers on loopback: one connection
for many checks, and every way a server may end or spoil one (close after an answer, close
while idle, answer garbage, never answer) gives the verdict a plain client would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farmhand.clock import WallClock
from farmhand.controller.health import CheckTarget, HealthMonitor
from farmhand.controller.http_probe import HttpProbe, ProbeError
from farmhand.drivers.local import LocalDriver
from farmhand.records import Health
from farmhand.spec.models import HealthSpec, HostSpec
from tests.integration.farmkit import free_port

pytestmark = pytest.mark.slow

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


@dataclass
class Server:
    """A loopback server whose answer to each request head is ``answer(n)`` (n counts heads
    over all connections); ``None`` means say nothing."""

    answer: Callable[[int], bytes | None]
    close_after_answer: bool = False
    port: int = 0
    connections: int = 0
    requests: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"GET /health HTTP/1.1\r\n") and b"\r\nHost: 127.0.0.1:" in head
                self.requests += 1
                answer = self.answer(self.requests)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close_idle(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Server]]:
    servers: list[asyncio.Server] = []

    async def make(answer: Callable[[int], bytes | None] = lambda _: OK, **options: bool) -> Server:
        server = Server(answer, **options)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        server.port = listener.sockets[0].getsockname()[1]
        servers.append(listener)
        return server

    yield make  # type: ignore[misc]
    for listener in servers:
        listener.close()
        await listener.wait_closed()


async def test_many_checks_share_one_connection(serve: Callable[..., object]) -> None:
    server: Server = await serve()  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    assert [await probe.status() for _ in range(5)] == [200] * 5
    assert (server.connections, server.requests) == (1, 5)
    probe.close()


async def test_a_server_that_closes_after_each_answer_is_asked_on_a_new_connection(serve: Callable[..., object]) -> None:
    server: Server = await serve(lambda _: b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                                 close_after_answer=True)  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    assert [await probe.status() for _ in range(3)] == [503] * 3
    assert server.connections == 3


async def test_a_connection_closed_while_idle_is_opened_again_without_a_failure(serve: Callable[..., object]) -> None:
    server: Server = await serve()  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    assert await probe.status() == 200
    server.close_idle()
    await asyncio.sleep(0)  # let the close go out; the probe may or may not have seen it yet
    assert await probe.status() == 200
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n",
    b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
])
async def test_the_status_is_read_whatever_the_body_and_redirects_are_not_followed(
        serve: Callable[..., object], answer: bytes) -> None:
    server: Server = await serve(lambda _: answer)  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    assert await probe.status() == int(answer.split()[1])
    assert await probe.status() == int(answer.split()[1]), "and the connection is still good"


async def test_a_body_that_runs_until_the_close_is_a_whole_answer(serve: Callable[..., object]) -> None:
    server: Server = await serve(lambda _: b"HTTP/1.0 200 OK\r\n\r\nok until the end", close_after_answer=True)  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    assert await probe.status() == 200


async def test_garbage_and_a_close_before_any_answer_are_errors(serve: Callable[..., object]) -> None:
    garbage: Server = await serve(lambda _: b"SSH-2.0-OpenSSH\r\n\r\n")  # type: ignore[misc]
    with pytest.raises(ProbeError, match="not an HTTP answer"):
        await HttpProbe("127.0.0.1", garbage.port, "/health").status()
    silent: Server = await serve(lambda _: None, close_after_answer=True)  # type: ignore[misc]
    with pytest.raises(ProbeError, match="closed before an answer"):
        await HttpProbe("127.0.0.1", silent.port, "/health").status()


async def test_refused_is_an_os_error() -> None:
    with pytest.raises(ConnectionRefusedError):
        await HttpProbe("127.0.0.1", free_port(), "/health").status()


async def test_a_check_that_timed_out_starts_the_next_on_a_fresh_connection(serve: Callable[..., object]) -> None:
    server: Server = await serve(lambda n: None if n == 1 else OK)  # type: ignore[misc]
    probe = HttpProbe("127.0.0.1", server.port, "/health")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await probe.status()
    assert await probe.status() == 200, "a late answer to the first request is never taken for the second"
    assert server.connections == 2


async def test_the_monitor_sees_a_node_fall_and_rise_over_its_kept_connection(
        serve: Callable[..., object], tmp_path: Path) -> None:
    status = {"code": 200}
    server: Server = await serve(
        lambda _: f"HTTP/1.1 {status['code']} X\r\nContent-Length: 0\r\n\r\n".encode())  # type: ignore[misc]
    changes = asyncio.Event()
    clock = WallClock()
    monitor = HealthMonitor(changes.set, clock.now)
    spec = HealthSpec(type="http", path="/health", interval="100ms", timeout="1s", fall=2, rise=2, start_grace="0s")
    driver = LocalDriver("local", HostSpec(), tmp_path, "farm")
    target = CheckTarget("web-1", 1, "127.0.0.1", server.port, spec, clock.now() - 1, driver)
    try:
        monitor.sync({"web-1": target})
        await _until(lambda: monitor.state("web-1").status == Health.HEALTHY)
        status["code"] = 500
        await _until(lambda: monitor.state("web-1").status == Health.UNHEALTHY)
        assert monitor.state("web-1").detail == "GET /health answered 500, expected 200"
        status["code"] = 200
        await _until(lambda: monitor.state("web-1").status == Health.HEALTHY)
        assert server.connections == 1, "every check over the one kept connection"
    finally:
        await monitor.close()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
