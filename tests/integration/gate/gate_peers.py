"""Peers for the gate-mode tests: aiosmtpd backends in the test's loop, and small clients."""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class SmtpBackend:
    """One aiosmtpd server: the mails it accepted and the connections it saw."""

    name: str
    server: asyncio.Server | None = None
    port: int = 0
    mails: list[bytes] = field(default_factory=list)
    connections: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        self.mails.append(content if isinstance(content, bytes) else str(content).encode())
        return "250 accepted"

    async def start(self) -> SmtpBackend:
        def factory() -> SMTP:
            self.connections += 1
            return SMTP(self, hostname=f"{self.name}.backend.test", ident=f"backend-{self.name}")

        self.server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def deliver(host: str, port: int, source: str, subject: str) -> tuple[float, bytes]:
    """Blocking smtplib delivery (run it in a thread); returns (seconds to banner, banner)."""
    started = time.monotonic()
    with smtplib.SMTP(timeout=20, source_address=(source, 0)) as client:
        code, banner = client.connect(host, port)
        waited = time.monotonic() - started
        assert code == 220, banner
        client.sendmail("a@polite.test", ["b@backend.test"], f"Subject: {subject}\r\n\r\nhello\r\n")
    return waited, banner


async def talk_early(host: str, port: int, source: str, said: bytes = b"EHLO bot\r\n") -> bytes:
    """Connect, talk at once, return everything the gate says until it closes."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        writer.write(said)
        await writer.drain()
        async with asyncio.timeout(15):
            return await reader.read()
    finally:
        writer.close()


async def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    """Await until ``predicate()`` (sync or async) is true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
