"""The engine's own active check, run only on backends that passive health ejected.

A backend that refused a connect or reset one is out at once (any worker may eject it);
it comes back after ``rise`` consecutive passes of this check, so a node that restarted on
the same address returns without waiting for the controller. The controller runs its own,
slower checks on every node and removes dead ones; this one only decides *readmission*.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from farmhand.lb.settings import CheckSettings


async def probe(host: str, port: int, check: CheckSettings) -> bool:
    """One check: a TCP connect, or an HTTP GET whose status must be ``check.status``."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(host, port)
            if check.type == "tcp":
                return True
            writer.write(
                f"GET {check.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: farmhand-lb-check\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
            parts = status_line.split()
            return len(parts) >= 2 and parts[1] == str(check.status).encode()
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class Readmitter:
    """Checks ejected backends until each passes ``rise`` times in a row, then readmits it."""

    def __init__(self, check: CheckSettings, readmit: Callable[[str], None]) -> None:
        self.check = check
        self.readmit = readmit
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, name: str, host: str, port: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = asyncio.create_task(self._until_up(name, host, port))

    def forget(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def forget_all(self) -> None:
        for name in list(self.tasks):
            self.forget(name)

    @property
    def watching(self) -> set[str]:
        return set(self.tasks)

    async def _until_up(self, name: str, host: str, port: int) -> None:
        passes = 0
        interval = max(0.05, min(self.check.interval, 5.0))
        while passes < self.check.rise:
            await asyncio.sleep(interval)
            passes = passes + 1 if await probe(host, port, self.check) else 0
        self.tasks.pop(name, None)
        self.readmit(name)
