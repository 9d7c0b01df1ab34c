"""A tiny backend for load-balancer tests: HTTP/1.1 keep-alive or a TCP line echo.

    python backend.py --port P --name NAME [--mode http|tcp] [--delay SECONDS]

http: answers every request with 200 and its name as the body, the X-Forwarded-For and
X-Forwarded-Proto it received echoed back in headers, after ``--delay`` seconds (so requests
are in flight when a test kills it). tcp: greets each connection with ``NAME\\n``, then echoes
every line. SIGTERM is a graceful stop: no new connections, idle ones closed, busy ones
closed after their answer. It writes ``ready`` to stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import httptools


class HttpConn(asyncio.Protocol):
    def __init__(self, server: Backend) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: dict[bytes, bytes] = {}
        self.busy = 0
        self.keep_alive = True
        self.body = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.busy += 1
        keep = self.parser.should_keep_alive()
        method = self.parser.get_method()
        headers, self.headers = self.headers, {}
        body_len, self.body = self.body, 0
        if self.server.delay:
            asyncio.get_running_loop().call_later(self.server.delay, self.answer, headers, keep, method, body_len)
        else:
            self.answer(headers, keep, method, body_len)

    def answer(self, headers: dict[bytes, bytes], keep: bool, method: bytes, body_len: int) -> None:
        self.busy -= 1
        if self.transport is None or self.transport.is_closing():
            return
        closing = not keep or self.server.stopping
        body = self.server.name.encode() + b"\n"
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Backend: %s\r\nX-Seen-For: %s\r\n"
            b"X-Seen-Proto: %s\r\nX-Seen-Body: %d\r\n%s\r\n"
            % (
                len(body), self.server.name.encode(), headers.get(b"x-forwarded-for", b"-"),
                headers.get(b"x-forwarded-proto", b"-"), body_len,
                b"Connection: close\r\n" if closing else b"",
            )
        )
        self.transport.write(head + (b"" if method == b"HEAD" else body))
        if closing and not self.busy:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def idle(self) -> bool:
        return not self.busy


class EchoConn(asyncio.Protocol):
    def __init__(self, server: Backend) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.conns.add(self)
        transport.write(self.server.name.encode() + b"\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)

    def idle(self) -> bool:
        return False


class Backend:
    def __init__(self, name: str, mode: str, delay: float) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.conns: set[HttpConn | EchoConn] = set()
        self.stopping = False

    async def run(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        factory = (lambda: HttpConn(self)) if self.mode == "http" else (lambda: EchoConn(self))
        server = await loop.create_server(factory, host, port, reuse_address=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        self.stopping = True
        server.close()
        for _ in range(500):  # graceful: idle keep-alive connections now, busy ones after their answer
            for conn in list(self.conns):
                if conn.idle() and conn.transport is not None:
                    conn.transport.close()
            if not self.conns:
                break
            await asyncio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mode", choices=["http", "tcp"], default="http")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(Backend(args.name, args.mode, args.delay).run(args.host, args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
