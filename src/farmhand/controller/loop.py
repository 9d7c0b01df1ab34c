"""The controller: a level-triggered reconcile loop (DESIGN.md rule 1).

Each tick observes the hosts, checks and load balancers, asks the pure ``reconcile`` what
to do, and acts. A tick also runs whenever something happens (a check changes state, a user
scales), and faster while nodes are in transition, so reactions take milliseconds rather
than a tick. Nodes and load balancers are separate processes: the controller can die at any
moment and a new one adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from farmhand.certs.pem import CertInfo
from farmhand.clock import Clock, WallClock
from farmhand.controller.act import Actor
from farmhand.controller.autoscaler import Autoscaler
from farmhand.controller.context import FarmContext, HostState, HostStatus
from farmhand.controller.decide.actions import Action
from farmhand.controller.decide.autoscale import Decision
from farmhand.controller.decide.health_state import CheckState
from farmhand.controller.decide.observed import World
from farmhand.controller.decide.passive import take_in
from farmhand.controller.decide.reconcile import reconcile, wanted_count
from farmhand.controller.decide.reload import describe_changes
from farmhand.controller.events import EventLog
from farmhand.controller.health import CheckTarget, HealthMonitor
from farmhand.controller.heap import HeapKeeper
from farmhand.controller.observe import Observer
from farmhand.controller.planes import DataPlanes
from farmhand.dataplane import DataPlane, PlaneStats
from farmhand.drivers import make_driver
from farmhand.drivers.base import Driver, HostMetrics
from farmhand.errors import FarmhandError, LbError, RequestError
from farmhand.records import Event, Mark, NodeRecord, NodeState, RoleState
from farmhand.spec import load_farm
from farmhand.spec.models import FarmSpec
from farmhand.store.base import Store
from farmhand.store.statedir import StateDir

log = logging.getLogger(__name__)
FAST_TICK = 0.1
TRANSITIONS = frozenset({NodeState.PENDING, NodeState.DRAINING, NodeState.STOPPING})


class Controller:
    def __init__(self, spec: FarmSpec, farm_file: Path, state: StateDir, store: Store, clock: Clock | None = None) -> None:
        clock = clock or WallClock()
        self._wake = asyncio.Event()
        events = EventLog(store, clock)
        health = HealthMonitor(self.wake, clock.now)
        self.ctx = FarmContext(spec, farm_file, state, store, clock, events, health)
        self.actor = Actor(self.ctx)
        self.shutting_down = False
        self.stopped = asyncio.Event()
        self._strays: dict[str, float] = {}
        """When each stray process was first seen (see decide/passive.py)."""
        self._synced: tuple[int, int] = (-1, 0)
        """(store version, spec) when health targets were last synced."""
        self._quiet_key: tuple[object, ...] | None = None
        """What the last reconcile that decided nothing saw (see ``_reconcile``)."""
        self._summary: tuple[tuple[int, int, bool], float, bool] = ((-1, 0, False), 0.0, False)
        """(store version, spec, shutting down) -> the next tick's delay, and whether every
        node is running (read each tick, computed when a node changed)."""
        self.planes = DataPlanes(state.path, clock.now, lambda kind, message, role: events.add(kind, message, role))
        self.planes.running = self.ctx.data_planes
        self.autoscaler = Autoscaler(self.ctx, self.autoscaled, self.wake, self.planes.stats)
        self.observer = Observer(self.ctx, self.planes)
        self.heap = HeapKeeper()
        """Moves a big farm's long-lived objects out of the collector's way at rest (heap.py)."""

    def __repr__(self) -> str:
        return f"<Controller {self.ctx.spec.name} [hosts: {len(self.ctx.drivers)} | shutting down: {self.shutting_down}]>"

    @property
    def spec(self) -> FarmSpec:
        return self.ctx.spec

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Connect to the hosts and the data planes that already run (adopting them).

        A load balancer that cannot listen fails the start (``LbError``) before any node is
        started, so `farmhand up` says why instead of reporting a farm that cannot be reached.
        """
        for name in json.loads(self.ctx.store.get_meta("drained_hosts") or "[]"):
            self.ctx.hosts.setdefault(name, HostStatus()).drained = True
        self._note_previous_controller()
        self.ctx.drivers.update(self._make_drivers(self.spec, {}))
        try:
            for name, role in self.spec.roles.items():
                if role.lb is not None:
                    await self.planes.start(name, role)
        except FarmhandError:
            await self._close_drivers()
            raise
        self._forget_overridden_counts(self.spec)
        self.ctx.store.set_meta("controller", json.dumps({"pid": os.getpid(), "started": self.ctx.clock.now()}))
        self.ctx.events.add("controller.started", f"controller started for farm {self.spec.name}")

    def _note_previous_controller(self) -> None:
        """A controller that was killed leaves its mark in the store: say so once."""
        previous = self.ctx.store.get_meta("controller")
        if previous is None:
            return
        try:
            pid = json.loads(previous).get("pid")
        except (ValueError, AttributeError):
            pid = None
        self.ctx.events.add("controller.lost", f"the previous controller (pid {pid}) ended without stopping the farm; "
                            "adopting what still runs")

    async def run(self) -> None:
        """Reconcile until the farm is shut down and every node has stopped."""
        try:
            while True:
                try:
                    await self.tick()
                except FarmhandError as error:
                    self.ctx.events.add("controller.error", str(error))
                except Exception:
                    log.exception("tick failed")
                if self.shutting_down and not self.ctx.store.nodes():
                    break
                if not self.shutting_down and self._settled()[1]:
                    self.heap.at_rest(len(self.ctx.store.nodes()), self.now())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_tick_in())
            await self.planes.stop_all()
            self._forget_counts()
            self.ctx.store.set_meta("controller", None)
            self.ctx.events.add("controller.stopped", f"farm {self.spec.name} is down")
        finally:
            await self.autoscaler.close()
            await self.ctx.health.close()
            await self.actor.close()
            await self.planes.close()
            await self._close_drivers()
            self.ctx.events.close()
            self.stopped.set()

    async def _close_drivers(self, drivers: Iterable[Driver] | None = None) -> None:
        for driver in list(self.ctx.drivers.values() if drivers is None else drivers):
            with contextlib.suppress(Exception):
                await driver.close()

    async def tick(self) -> None:
        if not self.shutting_down:
            await self.autoscaler.tick()
        world = await self.observer.observe(shutting_down=self.shutting_down,
                                            start_failures=self.actor.take_start_failures())
        if any(role.autoscale is not None and role.autoscale.victims == "least-loaded"
               for role in self.spec.roles.values()):
            world = dataclasses.replace(world, load=self.autoscaler.node_load())  # read per node: only when used
        # two phases: take in what was observed (adoptions, strays), then decide the rest
        passive, self._strays = take_in(world, self._strays)
        await self.actor.run(passive)
        await self.actor.run(self._reconcile(world))
        if not self.shutting_down:
            await self.planes.ensure(self.spec)
            self.planes.watch()
        # what follows reads every node: done only when a node (or the file) changed
        seen = (self.ctx.store.version, id(self.spec))
        changed = seen != self._synced
        if changed:
            self._sync_health()
            self._synced = seen
        if changed or self.planes.push_due():
            addresses = {name: driver.address for name, driver in self.ctx.drivers.items()}
            weights = {name: host.weight for name, host in self.spec.hosts.items()}
            await self.planes.push_backends(self.ctx.store.nodes(), addresses, weights)

    def request_shutdown(self, reason: str = "asked to stop") -> None:
        if not self.shutting_down:
            self.shutting_down = True
            self.ctx.events.add("farm.stopping", f"farm {self.spec.name} stopping: {reason}")
        self.wake()

    async def reload(self) -> list[str]:
        """Apply the farm file as it is now, all or nothing.

        Everything the new file needs (its drivers, its new or changed load balancers) is made
        first; only when all of it works does the farm switch to the new spec. On any error
        the old farm runs on untouched and the error (naming the host or listener) is raised.
        """
        new = load_farm(self.ctx.farm_file)
        old = self.spec
        changes = describe_changes(old, new)
        drivers = self._make_drivers(new, self.ctx.drivers)
        fresh = [d for name, d in drivers.items() if self.ctx.drivers.get(name) is not d]
        replaced: dict[str, DataPlane] = {}
        try:
            for name, role in new.roles.items():
                previous = old.roles.get(name)
                if role.lb is None or (previous is not None and previous.lb == role.lb):
                    continue  # unchanged: kept as it is (a failing one goes on being retried by the tick)
                replaced[name] = await self.planes.replace(name, role)
        except BaseException as error:
            await self.planes.restore(replaced.values(), old)
            await self._close_drivers(fresh)
            if isinstance(error, FarmhandError):
                raise LbError(f"reload refused, the farm runs on unchanged: {error}") from error
            raise
        # the switch: nothing below can fail
        gone = [d for name, d in self.ctx.drivers.items() if drivers.get(name) is not d]
        self.ctx.spec = new
        self.ctx.drivers.clear()
        self.ctx.drivers.update(drivers)
        await self.planes.switch(replaced, new)
        await self._close_drivers(gone)
        self._forget_overridden_counts(new)
        self.ctx.events.add("farm.reloaded", "farm file reloaded: " + ("; ".join(changes) if changes else "no changes"))
        self.wake()
        return changes

    def scale(self, role_name: str, count: int) -> tuple[int, int]:
        """Set a role's wanted count by hand; returns (before, after)."""
        before = self._set_count(role_name, count, "scale")
        self.ctx.events.add("role.scaled", f"role {role_name}: {before} -> {count} nodes (by request)", role_name)
        return before, count

    def autoscaled(self, role_name: str, count: int, reason: str) -> None:
        """Apply an autoscaling decision: like ``scale``, recorded as ``role.autoscaled``."""
        self._set_count(role_name, count, "autoscaler")
        self.ctx.events.add("role.autoscaled", reason, role_name)

    def _set_count(self, role_name: str, count: int, by: str) -> int:
        role = self.spec.roles[role_name]
        state = self.ctx.store.roles().get(role_name, RoleState(role_name))
        before = wanted_count(role, state)
        self.ctx.store.put_role(state.replace(wanted=count, wanted_by=by, file_bounds=role.bounds))
        self.wake()
        return before

    def _forget_overridden_counts(self, spec: FarmSpec) -> None:
        """Counts set by hand or by the autoscaler for a file that has since been edited give
        way to the file (see ``count_source``); forget them so an edit back cannot revive them."""
        for name, state in self.ctx.store.roles().items():
            role = spec.roles.get(name)
            if state.wanted is None or (role is not None and state.file_bounds == role.bounds):
                continue
            self.ctx.store.put_role(state.replace(wanted=None, wanted_by="file", file_bounds=""))
            if role is not None:
                self.ctx.events.add("role.count_from_file", f"role {name}: the farm file's {role.bounds.replace(',', ', ')} "
                                    f"replaces the {state.wanted} set by {state.wanted_by}", name)

    def _forget_counts(self) -> None:
        """The farm is down: the next `up` starts from the file."""
        for state in self.ctx.store.roles().values():
            if state.wanted is not None:
                self.ctx.store.put_role(state.replace(wanted=None, wanted_by="file", file_bounds=""))

    def mark(self, node_id: str, mark: Mark, move_to: str | None = None) -> None:
        node = self.ctx.store.node(node_id)
        if node is None:
            return
        self.ctx.store.put_node(node.replace(mark=mark, move_to=move_to))
        self.wake()

    def set_drained(self, host: str, drained: bool) -> None:
        """Keep placement off a host (remembered across controller restarts)."""
        self.ctx.hosts.setdefault(host, HostStatus()).drained = drained
        names = sorted(name for name, status in self.ctx.hosts.items() if status.drained)
        self.ctx.store.set_meta("drained_hosts", json.dumps(names))
        self.wake()

    # what the faces read, through intents ------------------------------------------------

    def now(self) -> float:
        return self.ctx.clock.now()

    def nodes(self) -> list[NodeRecord]:
        return self.ctx.store.nodes()

    def node(self, node_id: str) -> NodeRecord | None:
        return self.ctx.store.node(node_id)

    def role_states(self) -> dict[str, RoleState]:
        return self.ctx.store.roles()

    def host_state(self, name: str) -> HostState:
        status = self.ctx.hosts.get(name) or HostStatus()
        return HostState(status.state, status.since, status.reason, status.drained)

    def driver(self, name: str) -> Driver | None:
        """The driver of host ``name`` with its open connection (fleet work runs through it),
        or None when it could not be made (``host_state`` says why)."""
        return self.ctx.drivers.get(name)

    def host_address(self, name: str) -> str | None:
        """Where the nodes of host ``name`` are reached (None when its driver is not made)."""
        driver = self.ctx.drivers.get(name)
        return driver.address if driver is not None else None

    async def host_metrics(self, name: str, timeout: float = 2.0) -> HostMetrics | None:
        """The host's load now, or None when it is not up or does not answer in time."""
        driver = self.ctx.drivers.get(name)
        if driver is None or self.host_state(name).state != "up":
            return None
        try:
            async with asyncio.timeout(timeout):
                return await driver.host_metrics()
        except (FarmhandError, TimeoutError, OSError):
            return None

    def health(self, node_id: str) -> CheckState:
        return self.ctx.health.state(node_id)

    def note_read(self) -> None:
        """A person reads the farm's metrics now: sample them at the watched pace for a while."""
        self.autoscaler.note_read()

    def role_metrics(self, role: str) -> dict[str, float]:
        """A role's last sampled metrics by name (a source that stopped answering is left out)."""
        return self.autoscaler.current(role)

    def node_metrics(self, node_id: str) -> dict[str, float]:
        return self.autoscaler.node_current(node_id)

    def autoscale_decision(self, role: str) -> Decision | None:
        """The role's last autoscaling decision (bounds in force, and why), if it autoscales
        now (a reload may have turned autoscaling off since)."""
        spec = self.spec.roles.get(role)
        if spec is None or spec.autoscale is None:
            return None
        return self.autoscaler.decisions.get(role)

    async def plane_stats(self) -> dict[str, PlaneStats]:
        return await self.planes.stats()

    def certificates(self) -> dict[str, CertInfo]:
        """The certificate each HTTPS role's balancer serves now, by role."""
        return self.planes.certs.certificates()

    def plane_error(self, role: str) -> str | None:
        return self.planes.error(role)

    def plane_running(self, role: str) -> bool:
        return role in self.planes.running

    def events(self, after: int = 0, limit: int = 200) -> list[Event]:
        return self.ctx.events.recent(after, limit)

    def follow_events(self, after: int = 0) -> AsyncIterator[Event]:
        """Events after ``after``, then new ones as they come; ends when the controller stops."""
        return self.ctx.events.follow(after)

    def note(self, kind: str, message: str, role: str | None = None, node: str | None = None) -> None:
        """Record an event on behalf of a user's request."""
        self.ctx.events.add(kind, message, role, node)

    async def read_log(self, node_id: str, offset: int = 0) -> bytes:
        """A node's log from ``offset``; a stopped node's log stays readable where it ran
        (this machine's, for local hosts)."""
        node = self.ctx.store.node(node_id)
        if node is not None:
            driver = self.ctx.drivers.get(node.host)
            if driver is None:
                raise RequestError(f"node {node_id} is on host {node.host}, which the farm no longer has", "node", 404)
            return await driver.read_log(node_id, offset)
        for driver in self.ctx.drivers.values():
            if driver.kind == "local" and await driver.read_log(node_id, 0, 1):
                return await driver.read_log(node_id, offset)
        known = ", ".join(n.id for n in self.ctx.store.nodes()) or "none"
        raise RequestError(f"no node {node_id!r} and no log of one (nodes: {known})", "node", 404)

    # internals ---------------------------------------------------------------------------

    def _reconcile(self, world: World) -> list[Action]:
        """``reconcile``'s actions, without calling it when its answer is known: the last call
        decided nothing, and nothing it reads has changed since but the time, at a moment
        when time alone decides nothing (every node running, no role counting failures)."""
        store = self.ctx.store
        roles = store.roles()
        key = (store.version, id(self.spec), world.shutting_down, world.has_lb, world.load)
        if (key == self._quiet_key and self.observer.unchanged and self._settled()[1]
                and not any(state.failures for state in roles.values())):
            return []
        actions = reconcile(self.spec, store.nodes(), roles, world)
        self._quiet_key = key if not actions else None
        return actions

    def _settled(self) -> tuple[float, bool]:
        """The next tick's delay and whether every node runs, kept while no node changed."""
        key = (self.ctx.store.version, id(self.spec), self.shutting_down)
        if self._summary[0] != key:
            nodes = self.ctx.store.nodes()
            unchecked = {name for name, role in self.spec.roles.items() if not role.health}
            busy = self.shutting_down or any(
                n.state in TRANSITIONS or (n.state == NodeState.STARTING and n.role in unchecked) for n in nodes)
            delay = FAST_TICK if busy else self.spec.farm.tick
            self._summary = (key, delay, all(n.state == NodeState.RUNNING for n in nodes))
        return self._summary[1], self._summary[2]

    def _next_tick_in(self) -> float:
        return self._settled()[0]

    def _make_drivers(self, spec: FarmSpec, current: dict[str, Driver]) -> dict[str, Driver]:
        """The drivers ``spec`` needs, keeping the ``current`` ones whose host table is
        unchanged (an edited address, key or fake option makes a new driver).

        A host whose driver cannot be made is marked down with the reason and blocks nothing
        else; any other error propagates before anything was switched.
        """
        drivers: dict[str, Driver] = {}
        for name, host in spec.hosts.items():
            kept = current.get(name)
            if kept is not None and self.spec.hosts.get(name) == host:
                drivers[name] = kept
                continue
            try:
                drivers[name] = make_driver(name, host, self.ctx.state.path, self.ctx.state.farm_id)
            except FarmhandError as error:
                status = self.ctx.hosts.setdefault(name, HostStatus())
                status.state, status.reason = "down", str(error)
                self.ctx.events.add("host.down", f"host {name} cannot be used: {error}")
        return drivers

    def _sync_health(self) -> None:
        """Health targets for the nodes written since the last sync (all of them after a
        reload, or when the store cannot say which)."""
        store = self.ctx.store
        version, spec = self._synced
        changes = store.changed_since(version) if spec == id(self.spec) else None
        if changes is None:
            targets = {node.id: target for node in store.nodes() if (target := self._health_target(node)) is not None}
            self.ctx.health.sync(targets)
        else:
            self.ctx.health.update({node_id: self._health_target(store.node(node_id)) for node_id, _ in changes})

    def _health_target(self, node: NodeRecord | None) -> CheckTarget | None:
        if node is None:
            return None
        role = self.spec.roles.get(node.role)
        driver = self.ctx.drivers.get(node.host)
        if (role is None or role.health is None or driver is None or node.pid is None
                or node.state not in (NodeState.STARTING, NodeState.RUNNING)):
            return None
        command = None
        if role.health.command:
            command = role.health.command.format(port=node.port or "", node=node.id, role=node.role,
                                                 host=driver.address)
        return CheckTarget(node.id, node.pid, driver.address, node.port, role.health,
                           node.started_at or self.ctx.clock.now(), driver, command)
