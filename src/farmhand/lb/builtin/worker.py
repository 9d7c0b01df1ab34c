"""One worker process of the builtin engine: serves its share of the listener.

Started by the supervisor (``farmhand.lb.builtin.engine``) as
``python -m farmhand.lb.worker --listen-fd N --link-fd M engine.json``: the listening
socket (one SO_REUSEPORT socket per worker, created and kept open by the supervisor so a
restarted worker picks up connections queued meanwhile) and its link to the supervisor are
inherited file descriptors, and so is the HTTPS listener's (``--tls-fd``) when the role has one.
The worker answers the supervisor's requests (``set_backends``, ``eject``, ``readmit``,
``configure`` (new certificates included), ``set_challenges``, ``stats``, ``active``, ``stop``), reports the backends
it ejects, and runs the once-per-tick sweep that enforces every timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import uvloop

from farmhand.lb.builtin import histogram
from farmhand.lb.builtin.certificates import Certificates
from farmhand.lb.builtin.context import TICK, Context
from farmhand.lb.builtin.link import Link, Message, open_link
from farmhand.lb.settings import EngineSettings

STOP_GRACE_MAX = 10.0
"""Longest a stopping worker waits for requests in flight (the farm is going down)."""


class Worker:
    def __init__(self, settings: EngineSettings) -> None:
        self.ctx = Context(settings, on_eject=self._report_eject)
        self.certificates: Certificates | None = None
        if settings.tls is not None:
            self.certificates = Certificates(settings.tls)
        self.link: Link | None = None
        self.stopping = asyncio.Event()
        self.grace = min(settings.drain_timeout, STOP_GRACE_MAX)

    def _report_eject(self, name: str) -> None:
        if self.link is not None:
            self.link.send({"event": "eject", "name": name})

    def on_message(self, message: Message) -> Message | None:
        op = message.get("op")
        ctx = self.ctx
        if op == "set_backends":
            ctx.table.apply(message["backends"], message.get("ejected", ()), ctx.now())
            return {}
        if op in ("eject", "readmit"):
            ctx.table.set_ejected(message["name"], op == "eject")
            return {}
        if op == "active":
            return {"active": ctx.table.active(message["name"])}
        if op == "stats":
            return self.stats()
        if op == "configure":
            settings = EngineSettings.from_json(message["settings"])
            if settings.tls is not None and self.certificates is not None and settings.tls.version != self.certificates.version:
                self.certificates.load(settings.tls)  # the supervisor loaded them first: they load
            ctx.configure(settings)
            return {}
        if op == "set_challenges":
            ctx.set_challenges(message["challenges"])
            return {}
        if op == "stop":
            self.grace = float(message.get("grace", self.grace))
            self.stopping.set()
            return {}
        if op == "ping":
            return {"pid": os.getpid()}
        raise ValueError(f"unknown op {op!r}")

    def stats(self) -> Message:
        ctx = self.ctx
        table = ctx.table.to_json()
        listener = ctx.listener.to_json()
        # The hot path counts requests, bytes and latency once, per backend; the listener's
        # figures are their sums (backends retired included, so totals never go down).
        parts = [table["retired"], *table["backends"].values()]
        for key in ("requests", "bytes_in", "bytes_out"):
            listener[key] = sum(part[key] for part in parts)
        merged = histogram.new()
        for part in parts:
            histogram.merge_sparse(merged, part["hist"])
        listener["hist"] = histogram.to_sparse(merged)
        return {
            "listener": listener,
            **table,
            "waiting": sum(1 for c in ctx.waiting if c.waiting_since is not None),
            "requests_per_s": ctx.requests_per_s(),
        }

    def protocol_factory(self) -> Any:
        ctx = self.ctx
        if ctx.settings.mode == "tcp":
            from farmhand.lb.builtin.tcp_proxy import TcpClient

            return lambda: TcpClient(ctx)
        from farmhand.lb.builtin.http_proxy import ClientSide

        return lambda: ClientSide(ctx)

    async def sweep_forever(self) -> None:
        ctx = self.ctx
        while True:
            await asyncio.sleep(TICK)
            ctx.tick += 1
            tick = ctx.tick
            for client in list(ctx.clients):
                client.sweep(tick)
            for slot in ctx.table.slots.values():
                if slot.idle and tick - slot.idle[0].stamp > ctx.pool_ticks:
                    stale = [c for c in slot.idle if tick - c.stamp > ctx.pool_ticks]
                    slot.idle = [c for c in slot.idle if tick - c.stamp <= ctx.pool_ticks]
                    for conn in stale:
                        conn.close()
            ctx.table.sweep(ctx.now(), ctx.settings.drain_timeout)
            if tick % round(1 / TICK) == 0:
                ctx.sample_rate()

    async def serve(self, listen_fd: int, link_fd: int, tls_fd: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.link = await open_link(socket.socket(fileno=link_fd), self.on_message, self.stopping.set)
        listener = socket.socket(fileno=listen_fd)
        server = await loop.create_server(self.protocol_factory(), sock=listener, backlog=1024)
        servers: list[Any] = [server]
        if tls_fd is not None and self.certificates is not None:
            servers.append(await self.serve_tls(socket.socket(fileno=tls_fd), self.certificates))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        sweeper = asyncio.create_task(self.sweep_forever())
        # The hot path makes no reference cycles (client and backend unlink each other after
        # every answer), so the cyclic collector has little to find: move what startup made
        # out of its way and let it run less often.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        self.link.send({"event": "ready", "pid": os.getpid()})
        await self.stopping.wait()
        for each in servers:
            each.close()
        await self.finish_in_flight()
        sweeper.cancel()
        self.link.close()

    async def serve_tls(self, listener: socket.socket, certificates: Certificates) -> Any:
        """The HTTPS listener: the engine's own TLS transport (``tls_transport``: OpenSSL
        reads and writes the socket), or the loop's TLS where ``_ssl`` lacks what it needs."""
        from farmhand.lb.builtin import tls_transport
        from farmhand.lb.builtin.http_proxy import TlsClientSide

        ctx = self.ctx
        loop = asyncio.get_running_loop()
        timeout = ctx.settings.http_request_timeout
        if tls_transport.supported():
            return tls_transport.TlsServer(loop, listener, certificates.outer, lambda: TlsClientSide(ctx), timeout)
        return await loop.create_server(lambda: TlsClientSide(ctx), sock=listener, backlog=1024,
                                        ssl=certificates.outer, ssl_handshake_timeout=timeout)

    async def finish_in_flight(self) -> None:
        """Close idle clients now, give the busy ones up to ``grace`` seconds, cut the rest."""
        ctx = self.ctx
        deadline = asyncio.get_running_loop().time() + self.grace
        while ctx.clients and asyncio.get_running_loop().time() < deadline:
            for client in list(ctx.clients):
                if not client.in_flight or ctx.settings.mode == "tcp" and client.peer is None:
                    client.transport.close()
            if ctx.settings.mode == "http":
                for client in list(ctx.clients):
                    client.keep_alive = False
            await asyncio.sleep(0.05)
        for client in list(ctx.clients):
            client.transport.abort()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farmhand.lb.worker")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--link-fd", type=int, required=True)
    parser.add_argument("--tls-fd", type=int, default=None)
    parser.add_argument("settings", type=Path)
    args = parser.parse_args(argv)
    settings = EngineSettings.from_json(json.loads(args.settings.read_text()))

    async def run() -> None:
        await Worker(settings).serve(args.listen_fd, args.link_fd, args.tls_fd)

    uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
