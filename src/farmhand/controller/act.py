"""Act: carry out the decided actions. Each one is written to the store first, then done,
so a controller that dies between the two finds the intent and finishes the job.

A tick's actions run in three phases: the ones that only write (create, mark, fail, drain,
forget) in one transaction; then stops and kills, each written before its signal; then starts,
in parallel across hosts and in order on each host: ports are picked, every start's intent is
written in one transaction, the nodes are started, and their pids are written in one more.
A tick that creates 500 nodes on 500 hosts thus waits for the slowest host, not for all of
them in a row, and writes its bookkeeping with three commits, not three per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from farmhand.controller.context import FarmContext
from farmhand.controller.decide import actions as a
from farmhand.controller.prestop import run_hook
from farmhand.drivers.base import Driver, NodeLaunch, RunningNode
from farmhand.errors import DriverError, FarmhandError, PortInUse
from farmhand.records import NodeRecord, NodeState, OnStop, RoleState
from farmhand.spec.deploy import workdir_on
from farmhand.spec.models import PreStopSpec
from farmhand.units import format_duration

log = logging.getLogger(__name__)
REPEATED_EVERY_TICK = frozenset({"node.unplaceable"})
BACKGROUND_TIMEOUT = 30.0
START_FANOUT = 64


@dataclass(frozen=True)
class _Launch:
    """A node ready to start: its record as it will be once started, where, and how."""

    node: NodeRecord
    driver: Driver
    launch: NodeLaunch
    at: float


class Actor:
    def __init__(self, ctx: FarmContext) -> None:
        self.ctx = ctx
        self._background_tasks: set[asyncio.Future[None]] = set()
        self.start_failures: dict[str, str] = {}
        """Starts that failed before any process ran, for the next tick's decisions
        (``take_start_failures``): the backoff they cause is decided, not done here."""
        self._last_note: dict[tuple[str, str | None], str] = {}
        """The last note of each kind per role: a node that cannot be placed is decided
        again every tick, but said once until something changes."""

    async def run(self, actions: list[a.Action]) -> None:
        writes = [x for x in actions if not isinstance(x, (a.StartNode, a.StopNode, a.KillNode))]
        signals = [x for x in actions if isinstance(x, (a.StopNode, a.KillNode))]
        starts = [x for x in actions if isinstance(x, a.StartNode)]
        with self.ctx.store.batch():
            for write in writes:
                await self._one_reported(write)
        for signal in signals:
            await self._one_reported(signal)
        if starts:
            await self._start_all(starts)

    async def _one_reported(self, action: a.Action) -> None:
        try:
            await self.one(action)
        except FarmhandError as error:
            self.ctx.events.add("controller.error", f"{type(action).__name__}: {error}")

    async def _start_all(self, starts: list[a.StartNode]) -> None:
        """Start nodes host by host, hosts in parallel (at most START_FANOUT at once), in
        three steps so a tick of many starts costs two commits, not three per node: ports are
        picked; every node's intent (starting, on that port) is written in one transaction;
        the nodes are started, and what came of it written in one more. A controller that
        dies before that last write adopts the started processes (``AdoptNode``)."""
        by_host: dict[str, list[a.StartNode]] = {}
        for action in starts:
            node = self._node(action.node_id)
            if node is not None:
                by_host.setdefault(node.host, []).append(action)
        taken: dict[str, set[int]] = {host: set() for host in by_host}
        for node in self.ctx.store.nodes():
            if node.host in taken and node.port:
                taken[node.host].add(node.port)
        fanout = asyncio.Semaphore(START_FANOUT)

        async def prepare(host: str, actions: list[a.StartNode]) -> list[_Launch]:
            ready = []
            async with fanout:
                for action in actions:
                    try:
                        launch = await self._prepare(action.node_id, self.ctx.clock.now(), taken[host])
                    except FarmhandError as error:
                        self.ctx.events.add("controller.error", f"StartNode: {error}")
                        continue
                    if launch is not None:
                        ready.append(launch)
            return ready

        async def launch_all(ready: list[_Launch]) -> list[tuple[_Launch, RunningNode | FarmhandError]]:
            outcomes: list[tuple[_Launch, RunningNode | FarmhandError]] = []
            async with fanout:
                for launch in ready:
                    try:
                        outcomes.append((launch, await launch.driver.start(launch.launch)))
                    except FarmhandError as error:
                        outcomes.append((launch, error))
            return outcomes

        prepared = [ready for ready in await asyncio.gather(*(prepare(h, x) for h, x in by_host.items())) if ready]
        with self.ctx.store.batch():
            for ready in prepared:
                for launch in ready:
                    self.ctx.store.put_node(launch.node)
        results = await asyncio.gather(*(launch_all(ready) for ready in prepared))
        with self.ctx.store.batch():
            for outcomes in results:
                for launch, outcome in outcomes:
                    self._started(launch, outcome)

    async def one(self, action: a.Action) -> None:
        ctx, now = self.ctx, self.ctx.clock.now()
        match action:
            case a.CreateNode():
                self._last_note.pop(("node.unplaceable", action.role), None)
                node = NodeRecord(action.node_id, action.role, action.host, NodeState.PENDING,
                                  action.fingerprint, now, now, reason=action.reason)
                ctx.store.put_node(node)
                ctx.events.add("node.created", f"{node.id} on {node.host}: {action.reason}", node.role, node.id)
            case a.StartNode():
                await self._start(action.node_id, now, None)
            case a.MarkRunning():
                if ready := self._node(action.node_id):
                    node = ready
                    ctx.store.put_node(node.replace(state=NodeState.RUNNING, state_since=now))
                    took = f" after {format_duration(now - node.state_since)}" if now > node.state_since else ""
                    ctx.events.add("node.ready", f"{node.id} is ready{took}", node.role, node.id)
            case a.NodeFailed():
                if failed := self._node(action.node_id):
                    node = failed
                    ctx.store.put_node(node.replace(state=NodeState.PENDING, state_since=now, pid=None,
                                                    started_at=None, restarts=node.restarts + 1, reason=action.reason))
                    ctx.events.add("node.failed", f"{node.id} {action.reason}; restarting it (restart {node.restarts + 1})",
                                   node.role, node.id)
            case a.DrainNode():
                if draining := self._node(action.node_id):
                    node = draining
                    ctx.store.put_node(node.replace(state=NodeState.DRAINING, state_since=now, on_stop=action.on_stop,
                                                    reason=action.reason))
                    ctx.events.add("node.draining", f"{node.id} draining: {action.reason}", node.role, node.id)
            case a.StopNode():
                await self._stop(action, now)
            case a.KillNode():
                if killed := self._node(action.node_id):
                    node = killed
                    ctx.store.put_node(node.replace(killed=True))
                    await self._signal(node, "KILL")
                    ctx.events.add("node.killed", f"{node.id} killed: {action.reason}", node.role, node.id)
            case a.NodeGone():
                self._gone(action, now)
            case a.AdoptNode():
                if adopted := self._node(action.node_id):
                    node = adopted
                    state = NodeState.STARTING if node.state == NodeState.PENDING else node.state
                    ctx.store.put_node(node.replace(pid=action.pid, started_at=action.started_at, state=state))
                    ctx.events.add("node.adopted", f"{node.id}: adopted running process {action.pid} on {action.host}",
                                   node.role, node.id)
            case a.SignalStray():
                driver = ctx.drivers.get(action.host)
                if driver is not None:
                    await driver.signal(RunningNode(action.node_id, action.pid, action.started_at), action.signame)
            case a.SetRole():
                current = ctx.store.roles().get(action.role, RoleState(action.role))
                ctx.store.put_role(current.replace(failures=action.failures, backoff_until=action.backoff_until,
                                                   failed_at=action.failed_at))
            case a.Note():
                key = (action.kind, action.role)
                if action.kind not in REPEATED_EVERY_TICK or self._last_note.get(key) != action.message:
                    self._last_note[key] = action.message
                    ctx.events.add(action.kind, action.message, action.role, action.node)

    def _node(self, node_id: str) -> NodeRecord | None:
        return self.ctx.store.node(node_id)

    async def _start(self, node_id: str, now: float, ports_taken: set[int] | None) -> None:
        """Start one node; ``ports_taken`` holds the ports of its host's nodes (and gets the
        one picked), or None to read them from the store."""
        launch = await self._prepare(node_id, now, ports_taken)
        if launch is None:
            return
        self.ctx.store.put_node(launch.node)
        try:
            outcome: RunningNode | FarmhandError = await launch.driver.start(launch.launch)
        except DriverError as error:
            outcome = error
        self._started(launch, outcome)

    async def _prepare(self, node_id: str, now: float, ports_taken: set[int] | None) -> _Launch | None:
        """What starting a node takes (its port picked), or None when it cannot start now
        (a failed port pick is recorded as a failed start). Writes nothing else."""
        ctx = self.ctx
        node = self._node(node_id)
        role = ctx.spec.roles.get(node.role) if node else None
        driver = ctx.drivers.get(node.host) if node else None
        if node is None or role is None or driver is None:
            return None
        if ports_taken is None:
            ports_taken = {n.port for n in ctx.store.nodes() if n.host == node.host and n.port}
        try:
            port = await self._port_for(node, ports_taken)
        except DriverError as error:
            self._start_failed(node, str(error), now)
            return None
        node = node.replace(state=NodeState.STARTING, state_since=now, port=port, killed=False)
        values = {"port": port if port is not None else "", "node": node.id, "role": node.role, "host": driver.address}
        launch = NodeLaunch(
            node_id=node.id,
            role=node.role,
            command=role.command.format(**values),
            env={k: v.format(**values) if "{" in v else v for k, v in role.env.items()},
            workdir=workdir_on(role.workdir, role.deploy, node.host),
            port=port,
        )
        return _Launch(node, driver, launch, now)

    def _started(self, launch: _Launch, outcome: RunningNode | FarmhandError) -> None:
        """Record what came of a start: the process, or why there is none."""
        node = launch.node
        if isinstance(outcome, DriverError):
            self._start_failed(node, str(outcome), launch.at)
            return
        if not isinstance(outcome, RunningNode):  # not the host's answer: said, and seen next tick
            self.ctx.events.add("controller.error", f"StartNode: {outcome}")
            return
        self.ctx.store.put_node(node.replace(pid=outcome.pid, started_at=outcome.started_at))
        where = f" on port {node.port}" if node.port else ""
        self.ctx.events.add("node.started", f"{node.id} started on {node.host}{where} (pid {outcome.pid})",
                            node.role, node.id)

    async def _port_for(self, node: NodeRecord, ports_taken: set[int]) -> int | None:
        ctx = self.ctx
        role = ctx.spec.roles[node.role]
        driver = ctx.drivers[node.host]
        if role.port == "none":
            return None
        if isinstance(role.port, int):
            if not await driver.port_is_free(role.port):
                raise PortInUse(node.host, role.port)
            return role.port
        taken = ports_taken - {node.port}
        if node.port and node.port not in taken and await driver.port_is_free(node.port):
            port = node.port
        else:
            port = await driver.pick_free_port(taken)
        ports_taken.add(port)
        return port

    def _start_failed(self, node: NodeRecord, reason: str, now: float) -> None:
        """A start that failed before any process ran: the node waits as pending, and the next
        tick decides its role's backoff (an early failure like any other)."""
        self.ctx.store.put_node(node.replace(state=NodeState.PENDING, state_since=now, pid=None, reason=reason))
        self.start_failures[node.id] = reason

    def take_start_failures(self) -> dict[str, str]:
        failures, self.start_failures = self.start_failures, {}
        return failures

    async def _stop(self, action: a.StopNode, now: float) -> None:
        node = self._node(action.node_id)
        if node is None:
            return
        role = self.ctx.spec.roles.get(node.role)
        if node.state == NodeState.STOPPING:
            # already signalled (a failing node that scale-in now removes for good): change
            # only what happens after it stops, keeping its grace clock and kill
            self.ctx.store.put_node(node.replace(on_stop=action.on_stop, reason=action.reason))
            return
        self.ctx.store.put_node(node.replace(state=NodeState.STOPPING, state_since=now, on_stop=action.on_stop,
                                             killed=False, reason=action.reason))
        kind = "node.unhealthy" if action.failure else "node.stopping"
        then = "; restarting it" if action.on_stop == OnStop.RESTART else ""
        self.ctx.events.add(kind, f"{node.id} stopping: {action.reason}{then}", node.role, node.id)
        signame = role.stop_signal if role else "TERM"
        driver = self.ctx.drivers.get(node.host)
        if role is not None and role.pre_stop is not None and action.on_stop == OnStop.REMOVE and driver is not None:
            # the hook may take long (a worker handing its data over): in the background, so
            # the tick goes on; the role's kill grace counts the hook's timeout
            task = asyncio.ensure_future(self._pre_stop_then_signal(node, role.pre_stop, driver, signame))
            self._background_tasks.add(task)
            task.add_done_callback(self._background_tasks.discard)
            return
        await self._signal(node, signame)

    async def _pre_stop_then_signal(self, node: NodeRecord, hook: PreStopSpec, driver: Driver, signame: str) -> None:
        values = {"port": node.port if node.port is not None else "", "node": node.id, "role": node.role,
                  "host": driver.address}
        role = self.ctx.spec.roles.get(node.role)
        env = {k: v.format(**values) if "{" in v else v for k, v in role.env.items()} if role else {}
        outcome = await run_hook(hook, values, driver, node.port, workdir_on(role.workdir, role.deploy, node.host) if role else None, env)
        self.ctx.events.add("node.pre_stop", f"{node.id} pre_stop: {outcome}", node.role, node.id)
        current = self._node(node.id)
        if current is not None and current.state == NodeState.STOPPING and not current.killed:
            with contextlib.suppress(FarmhandError):
                await self._signal(current, signame)

    async def _signal(self, node: NodeRecord, signame: str) -> None:
        """Signal a node; on a host that does not answer, in the background, so a lost host
        never holds up the tick that declares it down and places its nodes elsewhere."""
        driver = self.ctx.drivers.get(node.host)
        if driver is None or node.pid is None:
            return
        call = driver.signal(RunningNode(node.id, node.pid, node.started_at or 0.0), signame)
        status = self.ctx.hosts.get(node.host)
        if status is None or status.state == "up":
            await call
            return
        task = asyncio.ensure_future(self._background(call, f"{signame} to {node.id} on {node.host}"))
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def _background(self, call: Awaitable[None], what: str) -> None:
        try:
            async with asyncio.timeout(BACKGROUND_TIMEOUT):
                await call
        except (FarmhandError, TimeoutError, OSError) as error:
            log.info("%s failed: %s", what, error or "timeout")

    async def close(self) -> None:
        for task in list(self._background_tasks):
            task.cancel()
        for task in list(self._background_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _gone(self, action: a.NodeGone, now: float) -> None:
        ctx = self.ctx
        node = self._node(action.node_id)
        if node is None:
            return
        if action.on_stop == OnStop.RESTART:
            ctx.store.put_node(node.replace(state=NodeState.PENDING, state_since=now, pid=None, started_at=None,
                                            restarts=node.restarts + 1, on_stop=OnStop.REMOVE, killed=False))
            return
        ctx.store.delete_node(node.id)
        if node.pid is not None:
            ctx.events.add("node.stopped", f"{node.id} stopped ({node.reason})" if node.reason else f"{node.id} stopped",
                           node.role, node.id)
