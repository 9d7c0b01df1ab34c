"""The gate's brain in the data-plane process: admits clients, classifies them, dials backends,
answers the control channel.

Decisions come from the pure modules (``rdns``, ``policy``, ``admission``); this class wires
them to the event loop. DNS answers are cached per address for ``DNS_CACHE_TTL`` so a
returning client (or ten thousand connections from one bot) costs one lookup, and lookups in
flight are bounded so a flood of new addresses cannot exhaust sockets.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from farmhand.clock import Clock, WallClock
from farmhand.dataplane import Backend
from farmhand.errors import GateError
from farmhand.gate import resolve
from farmhand.gate.admission import PassCache
from farmhand.gate.backends import BackendPool
from farmhand.gate.config import GateConfig, GateSettings
from farmhand.gate.hold import BackendSide, ClientSide
from farmhand.gate.policy import remaining_delay
from farmhand.gate.rdns import Rdns, classify
from farmhand.gate.stats import GateStats, StatClass

if TYPE_CHECKING:
    import dns.asyncresolver

DNS_CACHE_TTL = 300.0
DNS_CACHE_SIZE = 100_000
LOOKUPS_AT_ONCE = 256
OVER_CAPACITY_REPLY = b"421 4.3.2 Too many connections, try again later\r\n"
NO_BACKEND_REPLY = b"421 4.3.0 Service not available, try again later\r\n"
OPS = ("ping", "set_backends", "active", "stats", "configure", "stop")


class Gate:
    """Everything one gate process knows; one instance per process."""

    def __init__(self, config: GateConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.settings = GateSettings.from_options(config.options)
        self.clock = clock or WallClock()
        self.stats = GateStats()
        self.pool = BackendPool()
        self.pass_cache = PassCache(self.settings.pass_cache_ttl, self.settings.pass_cache_size, self.clock)
        self.clients: set[ClientSide] = set()
        self.listening: tuple[str, int] | None = None
        self.metrics_listening: tuple[str, int] | None = None
        self.stopping = asyncio.Event()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._dns_cache: dict[str, tuple[Rdns, float]] = {}
        self._in_flight: dict[str, asyncio.Future[Rdns]] = {}
        self._lookup_slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Gate {self.config.role} [{len(self.clients)} clients | {self.pool!r}]>"

    # -- clients ------------------------------------------------------------------------

    def admit(self, client: ClientSide) -> None:
        """A client connected: skip its delay, classify it from the cache, or look it up."""
        self.stats.accepted += 1
        if len(self.clients) >= self.settings.max_clients:
            self.stats.over_capacity += 1
            client.state = "connecting"  # not held: the refusal below is all it gets
            client.refuse(OVER_CAPACITY_REPLY)
            return
        self.clients.add(client)
        if self.settings.allowlist.allows_address(client.ip):
            self._skip(client, "allowlisted")
        elif self.pass_cache.fresh(client.ip):
            self._skip(client, "cached")
        else:
            known = self._cached_rdns(client.ip)
            if known is not None:
                self.stats.lookup_cache_hits += 1
                self._classified(client, known)
            else:
                self._spawn(self._look_up(client))

    def forget(self, client: ClientSide) -> None:
        self.clients.discard(client)

    def passed(self, ip: str) -> None:
        self.pass_cache.add(ip)

    def dial(self, client: ClientSide) -> None:
        self._spawn(self._connect(client))

    def _skip(self, client: ClientSide, klass: StatClass) -> None:
        client.classified(klass)
        client.release()

    def _classified(self, client: ClientSide, rdns: Rdns) -> None:
        if rdns.outcome == "confirmed" and self.settings.allowlist.allows_name(rdns.name):
            self._skip(client, "allowlisted")
            return
        policy = self.settings.policy
        klass = classify(rdns, client.ip, policy.rules)
        client.classified(klass)
        elapsed = asyncio.get_running_loop().time() - client.started
        client.hold(remaining_delay(policy.delay_for(klass), elapsed))

    async def _look_up(self, client: ClientSide) -> None:
        self._classified(client, await self._rdns_of(client.ip))

    async def _rdns_of(self, ip: str) -> Rdns:
        """One lookup per address at a time: clients from an address being looked up wait for
        that answer. A resolver that cannot even be set up counts as a DNS failure."""
        pending = self._in_flight.get(ip)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rdns] = asyncio.get_running_loop().create_future()
        self._in_flight[ip] = future
        try:
            async with self._lookup_slots:
                rdns = self._cached_rdns(ip)
                if rdns is None:
                    self.stats.lookups += 1
                    try:
                        if self._resolver is None:
                            self._resolver = resolve.async_resolver(self.settings.dns_servers)
                        rdns = await resolve.lookup_async(self._resolver, ip, self.settings.dns_timeout)
                    except Exception:  # no resolv.conf, no servers: a failure, not a crash
                        rdns = Rdns("dns_failure")
                    self._remember(ip, rdns)
            future.set_result(rdns)
            return rdns
        finally:
            if not future.done():
                future.cancel()
            del self._in_flight[ip]

    def _cached_rdns(self, ip: str) -> Rdns | None:
        entry = self._dns_cache.get(ip)
        if entry is None:
            return None
        if entry[1] <= self.clock.now():
            del self._dns_cache[ip]
            return None
        return entry[0]

    def _remember(self, ip: str, rdns: Rdns) -> None:
        while len(self._dns_cache) >= DNS_CACHE_SIZE:
            del self._dns_cache[next(iter(self._dns_cache))]
        self._dns_cache[ip] = (rdns, self.clock.now() + DNS_CACHE_TTL)

    async def _connect(self, client: ClientSide) -> None:
        """Dial backends in round-robin order, each at most once, until one answers."""
        loop = asyncio.get_running_loop()
        for backend in self.pool.candidates(loop.time()):
            if client.state != "connecting":
                return
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    transport, _ = await loop.create_connection(
                        lambda: BackendSide(client), backend.host, backend.port
                    )
            except (OSError, TimeoutError):
                self.stats.connect_failures += 1
                self.pool.failed(backend.name, loop.time())
                continue
            client.attach(transport, backend.name)
            return
        if client.state == "connecting":
            self.stats.no_backend += 1
            client.refuse(NO_BACKEND_REPLY)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- control channel ----------------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-channel request (see ``OPS``)."""
        op = request.get("op")
        if op == "ping":
            return self._identity()
        if op == "set_backends":
            backends = [Backend.from_json(item) for item in request.get("backends", [])]
            self.pool.set(backends)
            return {"backends": len(backends)}
        if op == "active":
            return {"active": self.pool.active(str(request["name"]))}
        if op == "stats":
            return self.snapshot()
        if op == "configure":
            self.reconfigure(request.get("options", {}))
            return self._identity()
        if op == "stop":
            self.stopping.set()
            return {}
        raise GateError(f"unknown op {op!r} (known: {', '.join(OPS)})")

    def reconfigure(self, options: dict[str, Any]) -> None:
        """New options for clients that arrive from now on (held ones keep their timers)."""
        config = GateConfig.from_json({**self.config.to_json(), "options": options})
        self.config = config
        self.settings = GateSettings.from_options(config.options)
        self.pass_cache.ttl = self.settings.pass_cache_ttl
        self.pass_cache.max_size = self.settings.pass_cache_size
        self._resolver = None
        self._dns_cache.clear()

    def _identity(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "role": self.config.role,
            "wanted_listen": self.config.listen,
            "listen": _show(self.listening),
            "metrics": _show(self.metrics_listening),
            "options_hash": self.config.options_hash(),
        }

    def snapshot(self) -> dict[str, Any]:
        """Stats as JSON: counters per class, gauges, backends, and the process's own
        file descriptors and tasks (to catch leaks)."""
        held = sum(1 for client in self.clients if client.state == "holding")
        return {
            **self.stats.to_json(),
            "role": self.config.role,
            "held": held,
            "clients": len(self.clients),
            "relaying": self.pool.total_active(),
            "pass_cache": len(self.pass_cache),
            "backends": self.pool.to_json(),
            "process": {"pid": os.getpid(), "fds": _open_fds(), "tasks": len(asyncio.all_tasks())},
        }

    # -- shutdown -----------------------------------------------------------------------

    async def shut_down(self) -> None:
        """Close held clients, give relays up to ``drain_timeout`` to end, then close all."""
        for client in list(self.clients):
            if client.state != "relaying":
                client.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while self.pool.total_active() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        for client in list(self.clients):
            client.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _show(address: tuple[str, int] | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1
