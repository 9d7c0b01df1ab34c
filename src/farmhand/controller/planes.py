"""The controller's side of the data planes: which roles have one running, why one is not,
what backends each was last sent, and their stats, parsed once into typed records.

A data plane (load balancer or SMTP gate) is a process of its own; this module only holds
handles to them. A plane that cannot start is retried every ``PLANE_RETRY`` seconds and its
error is said once (until it changes). Each push sends the whole wanted backend set, when it
changed and every ``REFRESH`` seconds anyway, so an engine that restarted catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

from farmhand.controller.certs import CertKeeper
from farmhand.dataplane import Backend, DataPlane, PlaneStats
from farmhand.errors import FarmhandError, LbError
from farmhand.records import NodeRecord, NodeState
from farmhand.spec.models import FarmSpec, RoleSpec

CALL_TIMEOUT = 2.0
PLANE_RETRY = 5.0
REFRESH = 5.0
WATCH_EVERY = 2.0
"""How often the planes' stats are read even when nobody asks, so a worker's death becomes an
event within seconds."""
Say = Callable[[str, str, str | None], object]
"""How planes report: (event kind, message, role)."""


class DataPlanes:
    def __init__(self, state_dir: Path, now: Callable[[], float], say: Say) -> None:
        self._state_dir = state_dir
        self._now = now
        self._say = say
        self.running: dict[str, DataPlane] = {}
        self._retry_at: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._sent: dict[str, list[Backend]] = {}
        self._last_push = 0.0
        self._deaths_seen: set[tuple[int, float]] = set()
        self._restarts: dict[str, int] = {}
        self._watching: asyncio.Task[dict[str, PlaneStats]] | None = None
        self._last_watch = 0.0
        self.certs = CertKeeper(state_dir, now, say)
        """HTTPS certificates: ACME orders and renewals, changed files (controller/certs.py)."""

    def __repr__(self) -> str:
        return f"<DataPlanes [running: {', '.join(self.running) or 'none'} | failing: {', '.join(self._errors) or 'none'}]>"

    def error(self, role: str) -> str | None:
        """Why a role's data plane is not serving, or None when it is (or has none)."""
        return None if role in self.running else self._errors.get(role)

    async def start(self, name: str, role: RoleSpec) -> None:
        """Start or adopt ``name``'s data plane now; ``LbError`` naming the listener if not."""
        assert role.lb is not None
        try:
            plane = make_data_plane(name, role, self._state_dir)
            adopted = await plane.ensure_running()
        except FarmhandError as error:
            raise LbError(f"role {name}: load balancer on {role.lb.listen} failed: {error}") from error
        self._retry_at.pop(name, None)
        self._errors.pop(name, None)
        self._sent.pop(name, None)
        self.running[name] = plane
        what = f"{role.lb.mode} load balancer on {role.lb.listen} ({role.lb.engine})"
        if adopted:
            self._say("lb.adopted", f"role {name}: adopted the running {what}", name)
        else:
            self._say("lb.ready", f"role {name}: {what} started", name)

    async def ensure(self, spec: FarmSpec) -> None:
        """Start or adopt every role's data plane that is not running; one that fails is
        tried again later, its error said once."""
        now = self._now()
        for name, role in spec.roles.items():
            if role.lb is None or name in self.running or now < self._retry_at.get(name, 0.0):
                continue
            try:
                await self.start(name, role)
            except LbError as error:
                self._retry_at[name] = now + PLANE_RETRY
                self._fail(name, f"{error}; retrying every {PLANE_RETRY:g}s")
        self.certs.tick(spec, self.running)

    async def replace(self, name: str, role: RoleSpec) -> DataPlane:
        """A new plane for a changed ``lb`` table, not yet in service: the running one is
        stopped first (a listener cannot be bound twice), unless it hands over in place (a
        pair: its members keep serving and the address stays); ``restore`` undoes it."""
        running = self.running.get(name)
        plane = make_data_plane(name, role, self._state_dir)
        hand_over = getattr(running, "hand_over", None)  # load-balancer pairs change in place
        if running is not None and not (hand_over is not None and await hand_over(plane)):
            with contextlib.suppress(FarmhandError):
                await running.stop()
        await plane.ensure_running()
        return plane

    async def restore(self, started: Iterable[DataPlane], spec: FarmSpec) -> None:
        """A reload failed: stop the planes it started, start again the ones it stopped."""
        for plane in started:
            with contextlib.suppress(FarmhandError):
                await plane.stop()
        for name, plane in list(self.running.items()):
            role = spec.roles.get(name)
            if role is None or role.lb is None:
                continue
            try:
                await plane.ensure_running()
            except FarmhandError as error:
                self.running.pop(name, None)  # the tick retries it and says why
                self._fail(name, f"role {name}: restoring the load balancer failed: {error}")

    async def switch(self, replaced: dict[str, DataPlane], spec: FarmSpec) -> None:
        """Put a reload's new planes in service and stop those of roles that lost theirs."""
        for name, plane in replaced.items():
            self.running[name] = plane
            self._sent.pop(name, None)
        for name in list(self.running):
            if name not in spec.roles or spec.roles[name].lb is None:
                plane = self.running.pop(name)
                self._sent.pop(name, None)
                with contextlib.suppress(FarmhandError):
                    await plane.stop()

    async def stop_all(self) -> None:
        for name, plane in list(self.running.items()):
            try:
                await plane.stop()
            except FarmhandError as error:
                self._say("lb.error", f"role {name}: stopping the load balancer failed: {error}", name)
        self.running.clear()

    async def push_backends(self, nodes: Iterable[NodeRecord], addresses: dict[str, str],
                            weights: dict[str, int]) -> None:
        """Send each plane its role's ready and draining nodes (``addresses``: host -> the
        address its nodes are reached at) when the set changed, or every REFRESH seconds."""
        now = self._now()
        refresh = now - self._last_push > REFRESH
        wanted: dict[str, list[Backend]] = {name: [] for name in self.running}
        for node in nodes:
            backends = wanted.get(node.role)
            address = addresses.get(node.host)
            if backends is None or node.port is None or address is None:
                continue
            if node.state == NodeState.RUNNING:
                backends.append(Backend(node.id, address, node.port, weights.get(node.host, 1), "ready"))
            elif node.state == NodeState.DRAINING:
                backends.append(Backend(node.id, address, node.port, weights.get(node.host, 1), "drain"))
        for name, backends in wanted.items():
            plane = self.running.get(name)
            if plane is None or (not refresh and self._sent.get(name) == backends):
                continue
            try:
                async with asyncio.timeout(CALL_TIMEOUT * 2):
                    await plane.set_backends(backends)
                self._sent[name] = backends
            except (FarmhandError, TimeoutError) as error:
                # forget the handle: the next tick adopts the engine again, or restarts it
                self.running.pop(name, None)
                self._sent.pop(name, None)
                self._fail(name, f"role {name}: the load balancer does not answer ({error or 'timeout'}); restarting it")
        if refresh:
            self._last_push = now

    def push_due(self) -> bool:
        """Whether a push is owed even if no node changed: a plane not yet sent its set, or
        the periodic refresh."""
        return self._now() - self._last_push > REFRESH or any(name not in self._sent for name in self.running)

    async def in_flight(self, role: str, backend: str) -> int:
        """Requests (connections) in flight to ``backend``; 0 when the plane does not answer,
        so an engine that is stuck cannot hold a drain forever."""
        plane = self.running.get(role)
        if plane is None:
            return 0
        try:
            async with asyncio.timeout(1.0):
                return await plane.active(backend)
        except (FarmhandError, TimeoutError):
            return 0

    async def stats(self) -> dict[str, PlaneStats]:
        """Every running plane's stats (a plane that does not answer in time is left out);
        also tells of worker deaths not yet told."""
        found: dict[str, PlaneStats] = {}
        for name, plane in list(self.running.items()):  # a reload may change the dict meanwhile
            with contextlib.suppress(FarmhandError, TimeoutError):
                async with asyncio.timeout(CALL_TIMEOUT):  # a stuck engine must not stall `status`
                    found[name] = PlaneStats.parse(await plane.stats())
        for name, stats in found.items():
            self._tell_worker_deaths(name, stats)
        for name, plane in list(self.running.items()):
            take_events = getattr(plane, "take_events", None)  # load-balancer pairs: the address moved
            if take_events is not None:
                for kind, message in take_events():
                    self._say(kind, message, name)
        return found

    def watch(self) -> None:
        """Read the planes' stats in the background every WATCH_EVERY seconds (called each
        tick; a slow engine never holds up the tick)."""
        now = self._now()
        if not self.running or now - self._last_watch < WATCH_EVERY:
            return
        if self._watching is None or self._watching.done():
            self._last_watch = now
            self._watching = asyncio.ensure_future(self.stats())

    async def close(self) -> None:
        await self.certs.close()
        if self._watching is not None and not self._watching.done():
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def _tell_worker_deaths(self, role: str, stats: PlaneStats) -> None:
        if stats.worker_restarts == self._restarts.get(role):
            return
        first_look = role not in self._restarts
        self._restarts[role] = stats.worker_restarts
        for death in stats.worker_deaths:
            if death.key in self._deaths_seen:
                continue
            self._deaths_seen.add(death.key)
            if first_look:
                continue  # deaths from before this controller started were told by the one then
            held = f" holding {death.connections} connection(s)" if death.connections is not None else ""
            self._say("lb.worker_died", f"role {role}: load balancer worker {death.worker} (pid {death.pid}) "
                      f"{death.how}{held}; its supervisor started it again", role)

    def _fail(self, name: str, message: str) -> None:
        if self._errors.get(name) != message:
            self._errors[name] = message
            self._say("lb.error", message, name)


def make_data_plane(role_name: str, role: RoleSpec, state_dir: Path) -> DataPlane:
    """The data plane for a role's ``lb`` table: the SMTP gate, or a load-balancer engine
    (chosen by ``farmhand.lb`` from the engines registry)."""
    assert role.lb is not None
    from farmhand.lb import make_data_plane as make_balancer

    if role.lb.gate == "smtp-delay":
        from farmhand.gate.dataplane import GateDataPlane, member_config

        if role.lb.is_pair:  # the gate on each member, as a pair runs an engine (lb/pair.py)
            pair: DataPlane = make_balancer(role_name, role.lb, role.health, state_dir,
                                            gate=member_config(role_name, role.lb))
            return pair
        gate: DataPlane = GateDataPlane(role_name, role.lb, state_dir)
        return gate
    balancer: DataPlane = make_balancer(role_name, role.lb, role.health, state_dir)
    return balancer
