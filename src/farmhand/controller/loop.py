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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from farmhand.clock import Clock, WallClock
from farmhand.controller.act import Actor
from farmhand.controller.autoscaler import Autoscaler
from farmhand.controller.context import FarmContext, HostStatus
from farmhand.controller.decide.reconcile import reconcile, wanted_count
from farmhand.controller.events import EventLog
from farmhand.controller.health import CheckTarget, HealthMonitor
from farmhand.controller.observe import observe
from farmhand.dataplane import Backend, DataPlane
from farmhand.drivers import make_driver
from farmhand.drivers.base import Driver
from farmhand.errors import FarmhandError, LbError
from farmhand.records import Mark, NodeState, RoleState
from farmhand.spec import load_farm
from farmhand.spec.models import FarmSpec, RoleSpec
from farmhand.store.base import Store
from farmhand.store.statedir import StateDir

log = logging.getLogger(__name__)
FAST_TICK = 0.1
STATS_TIMEOUT = 2.0
PLANE_RETRY = 5.0
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
        self._orphans: dict[str, float] = {}
        self._sent_backends: dict[str, list[Backend]] = {}
        self._last_backend_push = 0.0
        self._plane_retry_at: dict[str, float] = {}
        self._plane_errors: dict[str, str] = {}
        self.autoscaler = Autoscaler(self.ctx, self.autoscaled, self.wake)

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
                    await self._start_data_plane(name, role)
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
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_tick_in())
            await self._stop_data_planes()
            self._forget_counts()
            self.ctx.store.set_meta("controller", None)
            self.ctx.events.add("controller.stopped", f"farm {self.spec.name} is down")
        finally:
            await self.autoscaler.close()
            await self.ctx.health.close()
            await self.actor.close()
            await self._close_drivers()
            self.stopped.set()

    async def _close_drivers(self, drivers: Iterable[Driver] | None = None) -> None:
        for driver in list(self.ctx.drivers.values() if drivers is None else drivers):
            with contextlib.suppress(Exception):
                await driver.close()

    async def tick(self) -> None:
        if not self.shutting_down:
            await self.autoscaler.tick()
        world = await observe(self.ctx, shutting_down=self.shutting_down, orphans=self._orphans)
        world = dataclasses.replace(world, load=self.autoscaler.node_load())
        actions = reconcile(self.spec, self.ctx.store.nodes(), self.ctx.store.roles(), world)
        await self.actor.run(actions)
        self._sync_health()
        if not self.shutting_down:
            await self._ensure_data_planes(self.spec)
        await self._sync_backends()

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
        replaced_planes: dict[str, DataPlane] = {}
        try:
            for name, role in new.roles.items():
                previous = old.roles.get(name)
                if role.lb is None or (previous is not None and previous.lb == role.lb):
                    continue  # unchanged: kept as it is (a failing one goes on being retried by the tick)
                replaced_planes[name] = await self._replace_data_plane(name, role, previous)
        except FarmhandError as error:
            await self._undo_planes(replaced_planes, old)
            await self._close_drivers(fresh)
            raise LbError(f"reload refused, the farm runs on unchanged: {error}") from error
        except Exception:
            await self._undo_planes(replaced_planes, old)
            await self._close_drivers(fresh)
            raise
        # the switch: nothing below can fail
        gone = [d for name, d in self.ctx.drivers.items() if drivers.get(name) is not d]
        self.ctx.spec = new
        self.ctx.drivers.clear()
        self.ctx.drivers.update(drivers)
        self.ctx.data_planes.update(replaced_planes)
        for name in list(self.ctx.data_planes):
            if name not in new.roles or new.roles[name].lb is None:
                plane = self.ctx.data_planes.pop(name)
                self._sent_backends.pop(name, None)
                with contextlib.suppress(FarmhandError):
                    await plane.stop()
        for name in replaced_planes:
            self._sent_backends.pop(name, None)
        await self._close_drivers(gone)
        self._forget_overridden_counts(new)
        self.ctx.events.add("farm.reloaded", "farm file reloaded: " + ("; ".join(changes) if changes else "no changes"))
        self.wake()
        return changes

    async def _replace_data_plane(self, name: str, role: RoleSpec, previous: RoleSpec | None) -> DataPlane:
        """The new data plane for ``role``; a running one with other settings is stopped first
        (a listener cannot be bound twice) and started again by ``_undo_planes`` on failure."""
        running = self.ctx.data_planes.get(name)
        if running is not None:
            with contextlib.suppress(FarmhandError):
                await running.stop()
        plane = make_data_plane(name, role, self.ctx.state.path)
        await plane.ensure_running()
        return plane

    async def _undo_planes(self, replaced: dict[str, DataPlane], old: FarmSpec) -> None:
        """A reload failed: stop what it started, and bring back the old balancers it stopped."""
        for plane in replaced.values():
            with contextlib.suppress(FarmhandError):
                await plane.stop()
        for name, plane in list(self.ctx.data_planes.items()):
            role = old.roles.get(name)
            if role is None or role.lb is None:
                continue
            try:
                await plane.ensure_running()
            except FarmhandError as error:
                self.ctx.data_planes.pop(name, None)  # the tick retries it and says why
                self.ctx.events.add("lb.error", f"role {name}: restoring the load balancer failed: {error}", name)

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

    # internals ---------------------------------------------------------------------------

    def _next_tick_in(self) -> float:
        nodes = self.ctx.store.nodes()
        if self.shutting_down or any(n.state in TRANSITIONS for n in nodes):
            return FAST_TICK
        if any(n.state == NodeState.STARTING and self.spec.roles.get(n.role) and not self.spec.roles[n.role].health
               for n in nodes):
            return FAST_TICK
        return self.spec.farm.tick

    def _make_drivers(self, spec: FarmSpec, current: dict[str, Driver]) -> dict[str, Driver]:
        """The drivers ``spec`` needs, keeping the ``current`` ones whose host is unchanged.

        A host whose driver cannot be made is marked down with the reason and blocks nothing
        else; any other error propagates before anything was switched.
        """
        drivers: dict[str, Driver] = {}
        for name, host in spec.hosts.items():
            kept = current.get(name)
            if kept is not None and kept.kind == host.driver:
                drivers[name] = kept
                continue
            try:
                drivers[name] = make_driver(name, host, self.ctx.state.path, self.ctx.state.farm_id)
            except FarmhandError as error:
                status = self.ctx.hosts.setdefault(name, HostStatus())
                status.state, status.reason = "down", str(error)
                self.ctx.events.add("host.down", f"host {name} cannot be used: {error}")
        return drivers

    async def _ensure_data_planes(self, spec: FarmSpec) -> None:
        """Start or adopt every role's data plane; one that failed is tried again on later
        ticks (every PLANE_RETRY seconds), its error said again only when it changes."""
        now = self.ctx.clock.now()
        for name, role in spec.roles.items():
            if role.lb is None or name in self.ctx.data_planes or now < self._plane_retry_at.get(name, 0.0):
                continue
            try:
                await self._start_data_plane(name, role)
            except FarmhandError as error:
                self._plane_retry_at[name] = now + PLANE_RETRY
                message = f"role {name}: load balancer on {role.lb.listen} failed: {error}; retrying every {PLANE_RETRY:g}s"
                if self._plane_errors.get(name) != message:
                    self._plane_errors[name] = message
                    self.ctx.events.add("lb.error", message, name)

    async def _start_data_plane(self, name: str, role: RoleSpec) -> None:
        assert role.lb is not None
        try:
            plane = make_data_plane(name, role, self.ctx.state.path)
            adopted = await plane.ensure_running()
        except FarmhandError as error:
            raise LbError(f"role {name}: load balancer on {role.lb.listen} failed: {error}") from error
        self._plane_retry_at.pop(name, None)
        self._plane_errors.pop(name, None)
        self.ctx.data_planes[name] = plane
        what = f"{role.lb.mode} load balancer on {role.lb.listen} ({role.lb.engine})"
        if adopted:
            self.ctx.events.add("lb.adopted", f"role {name}: adopted the running {what}", name)
        else:
            self.ctx.events.add("lb.ready", f"role {name}: {what} started", name)

    def data_plane_error(self, name: str) -> str | None:
        """Why a role's load balancer is not serving, or None when it is (or has none)."""
        return None if name in self.ctx.data_planes else self._plane_errors.get(name)

    async def _stop_data_planes(self) -> None:
        for name, plane in list(self.ctx.data_planes.items()):
            try:
                await plane.stop()
            except FarmhandError as error:
                self.ctx.events.add("lb.error", f"role {name}: stopping the load balancer failed: {error}", name)
        self.ctx.data_planes.clear()

    def _sync_health(self) -> None:
        targets = {}
        for node in self.ctx.store.nodes():
            role = self.spec.roles.get(node.role)
            driver = self.ctx.drivers.get(node.host)
            if (role is None or role.health is None or driver is None or node.pid is None
                    or node.state not in (NodeState.STARTING, NodeState.RUNNING)):
                continue
            command = None
            if role.health.command:
                command = role.health.command.format(port=node.port or "", node=node.id, role=node.role,
                                                     host=driver.address)
            targets[node.id] = CheckTarget(node.id, node.pid, driver.address, node.port, role.health,
                                           node.started_at or self.ctx.clock.now(), driver, command)
        self.ctx.health.sync(targets)

    async def _sync_backends(self) -> None:
        """Send each load balancer its whole wanted backend set when it changed (and every few
        seconds anyway, so an engine that restarted catches up)."""
        now = self.ctx.clock.now()
        refresh = now - self._last_backend_push > 5.0
        nodes = self.ctx.store.nodes()
        for name, plane in list(self.ctx.data_planes.items()):
            backends = []
            for node in nodes:
                driver = self.ctx.drivers.get(node.host)
                if node.role != name or node.port is None or driver is None:
                    continue
                weight = self.spec.hosts[node.host].weight if node.host in self.spec.hosts else 1
                if node.state == NodeState.RUNNING:
                    backends.append(Backend(node.id, driver.address, node.port, weight, "ready"))
                elif node.state == NodeState.DRAINING:
                    backends.append(Backend(node.id, driver.address, node.port, weight, "drain"))
            if refresh or self._sent_backends.get(name) != backends:
                try:
                    async with asyncio.timeout(STATS_TIMEOUT * 2):
                        await plane.set_backends(backends)
                    self._sent_backends[name] = backends
                except (FarmhandError, TimeoutError) as error:
                    # Forget the handle: the next tick adopts the engine again, or restarts it.
                    self.ctx.data_planes.pop(name, None)
                    self._sent_backends.pop(name, None)
                    message = f"role {name}: the load balancer does not answer ({error or 'timeout'}); restarting it"
                    if self._plane_errors.get(name) != message:
                        self._plane_errors[name] = message
                        self.ctx.events.add("lb.error", message, name)
        if refresh:
            self._last_backend_push = now

    async def data_plane_stats(self) -> dict[str, dict[str, Any]]:
        stats = {}
        for name, plane in list(self.ctx.data_planes.items()):  # a reload may change the dict meanwhile
            with contextlib.suppress(FarmhandError, TimeoutError):
                async with asyncio.timeout(STATS_TIMEOUT):  # a stuck engine must not stall `status`
                    stats[name] = await plane.stats()
        return stats


def make_data_plane(role_name: str, role: RoleSpec, state_dir: Path) -> DataPlane:
    """The data plane for a role's ``lb`` table: the SMTP gate, or a load-balancer engine."""
    assert role.lb is not None
    if role.lb.gate == "smtp-delay":
        from farmhand.gate.dataplane import GateDataPlane

        gate: DataPlane = GateDataPlane(role_name, role.lb, state_dir)
        return gate
    from farmhand.lb import make_data_plane as make_lb

    balancer: DataPlane = make_lb(role_name, role.lb, role.health, state_dir)
    return balancer


def describe_changes(old: FarmSpec, new: FarmSpec) -> list[str]:
    """One phrase per change a reload makes, for the event and the command's answer."""
    changes = []
    for name in new.roles.keys() - old.roles.keys():
        changes.append(f"role {name} added")
    for name in old.roles.keys() - new.roles.keys():
        changes.append(f"role {name} removed")
    for name in new.roles.keys() & old.roles.keys():
        before, after = old.roles[name], new.roles[name]
        if before.bounds != after.bounds:
            changes.append(f"role {name} count {before.count or (before.min, before.max)} -> "
                           f"{after.count or (after.min, after.max)}")
        if before.fingerprint() != after.fingerprint():
            changes.append(f"role {name} command/env changed: rolling replacement")
        elif before != after and before.bounds == after.bounds:
            changes.append(f"role {name} settings changed")
    for name in new.hosts.keys() ^ old.hosts.keys():
        changes.append(f"host {name} {'added' if name in new.hosts else 'removed'}")
    return changes
