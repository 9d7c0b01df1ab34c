"""Helpers for the load-balancer scenarios: backend processes, steady clients, waiting.

Nothing here sleeps for a fixed time to let something happen: ``wait_for`` polls a
condition until a deadline, and load phases are counted in answered requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httptools
from tests.integration.farmkit import free_port

BACKEND_SCRIPT = Path(__file__).with_name("backend.py")
DEADLINE = 20.0



async def wait_for(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass(eq=False)
class BackendProc:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    async def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        self.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: self.proc.poll() is not None, f"backend {self.name} to exit")


class Backends:
    """Starts backend processes and guarantees they are gone at the end."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.procs: list[BackendProc] = []
        self.count = 0

    async def start(self, n: int = 1, delay: float = 0.002) -> list[BackendProc]:
        names = []
        for _ in range(n):
            self.count += 1
            names.append((f"n{self.count}", free_port()))
        return await self._launch(names, delay)

    async def start_on(self, name: str, port: int, delay: float = 0.002) -> BackendProc:
        """Start a node again under a known name and port (a node restarting in place)."""
        return (await self._launch([(name, port)], delay))[0]

    def _spawn(self, name: str, port: int, delay: float) -> BackendProc:
        proc = subprocess.Popen(
            [sys.executable, str(BACKEND_SCRIPT), "--port", str(port), "--name", name,
             "--mode", self.mode, "--delay", str(delay if self.mode == "http" else 0)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        backend = BackendProc(name, port, proc)
        self.procs.append(backend)
        return backend

    async def _launch(self, names: list[tuple[str, int]], delay: float) -> list[BackendProc]:
        started = [self._spawn(name, port, delay) for name, port in names]
        for backend in started:
            assert backend.proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(backend.proc.stdout.readline), DEADLINE)
            assert line.strip() == b"ready", f"backend {backend.name} did not start: {line!r}"
        return started

    def cleanup(self) -> None:
        for backend in self.procs:
            if backend.proc.poll() is None:
                backend.proc.kill()
            with contextlib.suppress(Exception):
                backend.proc.wait(timeout=5)


@dataclass
class LoadStats:
    ok: int = 0
    failed: int = 0
    by_backend: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    failed_conns: list[tuple[int, str | None]] = field(default_factory=list)


class _Response:
    """httptools callbacks for a test client: the backend name and the end of a response."""

    def __init__(self) -> None:
        self.done = False
        self.backend = ""
        self.status = 0
        self.keep = True
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-backend":
            self.backend = value.decode()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.done = True


class HttpLoad:
    """``concurrency`` keep-alive clients sending GETs in a loop until stopped.

    Every request either gets a 200 (``ok``) or counts as ``failed``; a client reconnects
    after a failure or a ``Connection: close`` answer.
    """

    def __init__(self, port: int, concurrency: int = 6, limit: int = 200_000) -> None:
        self.port = port
        self.concurrency = concurrency
        self.limit = limit
        self.stats = LoadStats()
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._client(i)) for i in range(self.concurrency)]

    async def _client(self, index: int) -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        sent = 0
        while self.running and self.stats.ok + self.stats.failed < self.limit:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                assert reader is not None
                sent += 1
                writer.write(f"GET /c{index}/{sent} HTTP/1.1\r\nHost: lb\r\n\r\n".encode())
                response = _Response()
                async with asyncio.timeout(10):
                    while not response.done:
                        data = await reader.read(65536)
                        if not data:
                            raise ConnectionError("closed without a (complete) response")
                        response.parser.feed_data(data)
                if response.status != 200:
                    raise ConnectionError(f"status {response.status}")
                self.stats.ok += 1
                self.stats.by_backend[response.backend] += 1
                if not response.keep:
                    writer.close()
                    writer = None
            except (OSError, TimeoutError, httptools.HttpParserError) as error:
                self.stats.failed += 1
                self.stats.errors.append(f"client {index} request {sent}: {type(error).__name__}: {error}")
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    async def more(self, n: int) -> None:
        """Wait until ``n`` more requests were answered."""
        target = self.stats.ok + n
        await wait_for(lambda: self.stats.ok >= target, f"{n} more answered requests (failed so far: {self.stats.errors[:3]})")

    async def stop(self) -> LoadStats:
        self.running = False
        await asyncio.gather(*self.tasks)
        return self.stats


class TcpLoad:
    """Clients that connect, read the backend's greeting, echo ``exchanges`` lines, close.

    ``open_on`` maps each open connection to the backend that greeted it (None until the
    greeting arrived), which is how a test knows which connections a kill may break.
    """

    def __init__(self, port: int, concurrency: int = 6, exchanges: int = 20, limit: int = 200_000) -> None:
        self.port = port
        self.concurrency = concurrency
        self.exchanges = exchanges
        self.limit = limit
        self.stats = LoadStats()
        self.running = True
        self.may_connect = asyncio.Event()
        self.may_connect.set()
        self.open_on: dict[int, str | None] = {}
        self.ids = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._client(i)) for i in range(self.concurrency)]

    async def _client(self, index: int) -> None:
        while self.running and self.stats.ok + self.stats.failed < self.limit:
            await self.may_connect.wait()
            self.ids += 1
            conn = self.ids
            self.open_on[conn] = None
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(10):
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    greeting = await reader.readline()
                    if not greeting:
                        raise ConnectionError("closed before the greeting")
                    name = greeting.decode().strip()
                    self.open_on[conn] = name
                    for i in range(self.exchanges):
                        line = f"c{index} {conn} {i}\n".encode()
                        writer.write(line)
                        if await reader.readline() != line:
                            raise ConnectionError("echo lost")
                        self.stats.ok += 1
                        self.stats.by_backend[name] += 1
                    del self.open_on[conn]
            except (OSError, TimeoutError) as error:
                self.stats.failed += 1
                self.stats.failed_conns.append((conn, self.open_on.get(conn)))
                self.stats.errors.append(f"conn {conn} ({self.open_on.get(conn)}): {type(error).__name__}: {error}")
            finally:
                self.open_on.pop(conn, None)
                if writer is not None:
                    writer.close()

    async def quiesce_connects(self) -> None:
        """Stop opening connections and wait until every open one knows its backend."""
        self.may_connect.clear()
        await wait_for(lambda: all(name is not None for name in self.open_on.values()), "connections to be greeted")

    async def more(self, n: int) -> None:
        target = self.stats.ok + n
        await wait_for(lambda: self.stats.ok >= target, f"{n} more echoed lines (failed so far: {self.stats.errors[:3]})")

    async def stop(self) -> LoadStats:
        self.running = False
        self.may_connect.set()
        await asyncio.gather(*self.tasks)
        return self.stats


def engine_pids(run_dir: Path, engine: str) -> list[int]:
    """Pids an engine's files name (to clean up after a failed test)."""
    path = run_dir / ("haproxy.pid" if engine == "haproxy" else "engine.pid")
    try:
        return [int(p) for p in path.read_text().split() if p.isdigit()]
    except FileNotFoundError:
        return []


def kill_engine(run_dir: Path, engine: str) -> None:
    for pid in engine_pids(run_dir, engine):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if engine == "builtin":
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
