"""JSON lines between the engine's supervisor and each worker, over an inherited socketpair.

The same framing as the controller's control channel, but on a connection that lives as long
as the worker: requests carry an ``id`` and get one answer with the same id; messages
without an id are events (a worker telling the supervisor it ejected a backend). A worker
whose link closes knows its supervisor is gone and shuts down, so a new engine never shares
the port with orphans serving a stale backend set.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]


class Link(asyncio.Protocol):
    """One end of a JSON-lines link."""

    def __init__(self, on_message: Callable[[Message], Message | None], on_close: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.transport: Any = None
        self.buffer = b""
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[Message]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
            self._handle(json.loads(line))

    def _handle(self, message: Message) -> None:
        if "reply_to" in message:
            future = self.waiting.pop(message["reply_to"], None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        try:
            answer = self.on_message(message)
        except Exception as error:  # an answer, not a crash: the link stays up
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        if "id" in message:
            self.send({"reply_to": message["id"], "ok": True, **(answer or {})})

    def send(self, message: Message) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(json.dumps(message).encode() + b"\n")

    async def request(self, message: Message, timeout: float = 5.0) -> Message:
        """Send a request and wait for its answer; ``ConnectionError`` if the link is gone."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("link closed")
        ident = next(self.ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[ident] = future
        self.send({**message, "id": ident})
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.waiting.pop(ident, None)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("link closed"))
        self.waiting.clear()
        self.on_close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_link(
    sock: socket.socket, on_message: Callable[[Message], Message | None], on_close: Callable[[], None]
) -> Link:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_unix_connection(lambda: Link(on_message, on_close), sock=sock)
    return protocol
