"""Observe: what runs on each host, how healthy it is, what is in flight through the load
balancers, as a ``World`` for the pure decisions. Observing only records: adopting known
processes and stopping strays are decided (``decide/passive.py``) and acted on like any other
action. The one state kept here is each host's (up, unreachable, down), which is what a host's
answers mean rather than a decision about nodes."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

from farmhand.controller.context import FarmContext, HostStatus
from farmhand.controller.decide.observed import HostView, NodeSeen, ProcessSeen, World
from farmhand.controller.planes import DataPlanes
from farmhand.drivers.base import RunningNode
from farmhand.errors import FarmhandError
from farmhand.records import LIVE_STATES, Health, NodeRecord, NodeState

log = logging.getLogger(__name__)
ALIVE_AND_HEALTHY = NodeSeen(True, None, Health.HEALTHY)
LIST_TIMEOUT = 3.0
"""The longest a host that is up may take to list its nodes, and never over half the farm's
``host_timeout``: a host that stops answering is then down within ``host_timeout`` of its
last answer, not ``LIST_TIMEOUT`` later."""
PROBE_TIMEOUT = 20.0
"""A background probe may wait for the driver's own verdict (no route, refused...)."""
REFRESH_SHARE = 3.0
"""A host whose driver says its listing has not changed is still asked at least every
``REFRESH_SHARE * host_timeout`` seconds (at a random moment in the second half of that, so
hosts spread over ticks). A host is also asked whenever a node on it changed (its record or
its health), so a host about to be acted on has just answered; the turn is for a link that
fails while nothing happens on it, which its driver's mark cannot see (the fake driver's
``cut`` can: a cut host says no mark and is asked every tick). Asking every host in turn
costs a tenth of a tick at rest at 1,000 hosts if the turn comes every few seconds, which is
why it comes this seldom."""
Kept = dict[str, tuple[object, float]]
"""Per host: its driver's listing mark when last listed, and when to ask again regardless. The
listing itself is not kept: only a host looked at again needs one, and such a host is asked."""


class Observer:
    """Observes each tick, redoing only what may have changed since the last one.

    The unit of work is a host. A host is looked at again when its driver's listing may have
    changed (``Driver.listing_mark``; a real driver always lists), when its state (up,
    unreachable, down) moved, when a node record on it changed (``Store.changed_since``), when
    a node on it changed health (``HealthMonitor.changed``), and every tick while a node on
    it drains or was seen dead (in-flight counts and log tails are read each time). Everything
    is looked at again when the farm file changed or the store cannot say what changed. The
    other hosts' nodes are seen as they were, so a farm at rest costs next to nothing per tick
    whatever its size; ``unchanged`` says the last ``World`` equals the one before but for
    its time.
    """

    def __init__(self, ctx: FarmContext, planes: DataPlanes) -> None:
        self.ctx, self.planes = ctx, planes
        self.unchanged = False
        self._marks: Kept = {}
        self._draws = random.Random(0)
        self._seen: dict[str, NodeSeen] = {}
        self._by_host: dict[str, dict[str, NodeSeen]] = {}
        self._adoptable: dict[str, list[ProcessSeen]] = {}
        self._strays: dict[str, list[ProcessSeen]] = {}
        self._volatile: set[str] = set()
        """Hosts to look at every tick (a node draining or seen dead on them)."""
        self._host_states: dict[str, str] = {}
        self._views: dict[str, HostView] = {}
        self._view_keys: dict[str, tuple[object, ...]] = {}
        self._version = -1
        self._spec: object = None
        self._nodes_by_host: dict[str, dict[str, NodeRecord]] = {}

    def __repr__(self) -> str:
        return f"<Observer [nodes seen: {len(self._seen)} | hosts: {len(self._by_host)} | volatile: {len(self._volatile)}]>"

    async def observe(self, *, shutting_down: bool, start_failures: dict[str, str]) -> World:
        ctx, store = self.ctx, self.ctx.store
        now = ctx.clock.now()
        version = store.version
        changes = store.changed_since(self._version) if self._spec is ctx.spec else None
        everything = changes is None
        dirty = set(self._volatile)
        if changes:
            dirty.update(host for _, host in changes)
        for node_id in ctx.health.changed():
            node = store.node(node_id)
            if node is not None:
                dirty.add(node.host)
        # a host about to be acted on is asked now whatever its mark says, so one that stopped
        # answering is found before anything waits on it
        listed, fresh = await _list_hosts(ctx, now, self._marks, self._draws, None if everything else dirty)
        dirty |= fresh
        for name, status in ctx.hosts.items():
            if self._host_states.get(name) != status.state:
                self._host_states[name] = status.state
                dirty.add(name)
        self._version, self._spec = version, ctx.spec
        by_host = self._index(changes)
        if everything:
            dirty = set(by_host) | set(listed) | set(self._by_host) | set(self._adoptable) | set(self._strays)
        unchanged = True
        for host in dirty:
            part, adoptable, strays, volatile = await self._look_at(host, by_host.get(host, {}), listed.get(host))
            if self._by_host.get(host, {}) != part or self._adoptable.get(host, []) != adoptable \
                    or self._strays.get(host, []) != strays:
                unchanged = False
            for node_id in self._by_host.pop(host, {}):
                self._seen.pop(node_id, None)
            if part:
                self._by_host[host] = part
                self._seen.update(part)
            _put(self._adoptable, host, adoptable)
            _put(self._strays, host, strays)
            if volatile:
                self._volatile.add(host)
            else:
                self._volatile.discard(host)
        views, views_changed = self._host_views()
        self.unchanged = unchanged and not views_changed and not start_failures
        return World(now, dict(self._seen), views, frozenset(self.planes.running), shutting_down,
                     adoptable=tuple(p for found in self._adoptable.values() for p in found),
                     strays=tuple(p for found in self._strays.values() for p in found),
                     start_failures=dict(start_failures))

    def _index(self, changes: list[tuple[str, str]] | None) -> dict[str, dict[str, NodeRecord]]:
        """The store's nodes by host: the changed ones replaced, or all read again when the
        store cannot say which changed."""
        store, by_host = self.ctx.store, self._nodes_by_host
        if changes is None:
            by_host.clear()
            for node in store.nodes():
                by_host.setdefault(node.host, {})[node.id] = node
            return by_host
        for node_id, host in changes:
            record = store.node(node_id)
            if record is not None and record.host == host:
                by_host.setdefault(host, {})[node_id] = record
                continue
            on_host = by_host.get(host)
            if on_host is not None:
                on_host.pop(node_id, None)
                if not on_host:
                    del by_host[host]
        return by_host

    async def _look_at(self, host_name: str, known: Mapping[str, NodeRecord],
                       running_nodes: dict[str, RunningNode] | None,
                       ) -> tuple[dict[str, NodeSeen], list[ProcessSeen], list[ProcessSeen], bool]:
        """What one host's nodes (``known``, by id) look like now: seen nodes, processes to
        adopt, strays, and whether the host must be looked at again next tick."""
        ctx = self.ctx
        adoptable, strays = [], []
        for node_id, running in (running_nodes or {}).items():
            if not running.alive:
                continue
            process = ProcessSeen(host_name, node_id, running.pid, running.started_at)
            record = known.get(node_id)
            if record is None:
                strays.append(process)
            elif (record.pid, record.started_at) != (running.pid, running.started_at):
                adoptable.append(process)
        seen: dict[str, NodeSeen] = {}
        volatile = False
        host = ctx.hosts.get(host_name, HostStatus())
        for node in known.values():
            if node.state not in LIVE_STATES:
                continue
            if host.state == "unreachable":
                seen[node.id] = NodeSeen(alive=True, health=ctx.health.status(node.id).status)
                continue
            found = (running_nodes or {}).get(node.id)
            if found is None or not found.alive:
                # a down host cannot tell why its nodes died: asking it would only wait for SSH
                tail = await _log_tail(ctx, node) if host.state == "up" else ""
                seen[node.id] = NodeSeen(False, found.exit_code if found else None, log_tail=tail)
                volatile = True
                continue
            check = ctx.health.status(node.id)
            if node.state == NodeState.DRAINING:
                seen[node.id] = NodeSeen(True, None, check.status, check.detail,
                                         await self.planes.in_flight(node.role, node.id))
                volatile = True
            elif check.status == Health.HEALTHY and not check.detail:
                seen[node.id] = ALIVE_AND_HEALTHY  # the common case at rest: one shared record
            else:
                seen[node.id] = NodeSeen(True, None, check.status, check.detail)
        return seen, adoptable, strays, volatile

    def _host_views(self) -> tuple[dict[str, HostView], bool]:
        """Each host's view, made again only when what it shows changed."""
        ctx = self.ctx
        changed = set(self._views) != set(ctx.spec.hosts)
        if changed:
            self._views = {name: view for name, view in self._views.items() if name in ctx.spec.hosts}
        for name, spec in ctx.spec.hosts.items():
            status = ctx.hosts.get(name, HostStatus())
            up = status.state == "up" and name in ctx.drivers
            key = (spec, up, status.drained, status.reason)
            if self._view_keys.get(name) == key:
                continue
            self._view_keys[name] = key
            # only a host that answers takes new nodes; nodes already on an unreachable one are
            # left alone until it is declared down (observe reports them as still alive)
            view = HostView(name, up=up, drained=status.drained, labels=dict(spec.labels),
                            max_nodes=spec.capacity.nodes, reason=status.reason)
            changed = changed or self._views.get(name) != view
            self._views[name] = view
        return dict(self._views), changed


def _put(where: dict[str, list[ProcessSeen]], host: str, found: list[ProcessSeen]) -> None:
    if found:
        where[host] = found
    else:
        where.pop(host, None)


async def _list_hosts(ctx: FarmContext, now: float, marks: Kept, draws: random.Random, ask: set[str] | None,
                      ) -> tuple[dict[str, dict[str, RunningNode]], set[str]]:
    """Listings of the hosts asked, and which of them may have changed this tick. A host that
    is up is asked inline (bounded by LIST_TIMEOUT) unless its driver's mark is the one in
    ``marks``, it was asked recently (REFRESH_SHARE) and it is not in ``ask`` (None: ask
    every host); one that is not up is probed in the background, so a dead or misconfigured
    host never slows the ticks of the others."""
    listed: dict[str, dict[str, RunningNode]] = {}
    inline, skipped = [], set()
    before: dict[str, object] = {}
    for name, driver in ctx.drivers.items():
        status = ctx.hosts.get(name)
        if status is None:
            status = ctx.hosts[name] = HostStatus(since=now)
        if status.state != "up":
            marks.pop(name, None)
            continue
        kept = marks.get(name)
        if kept is not None and kept[0] == driver.listing_mark():
            if now < kept[1] and ask is not None and name not in ask:
                skipped.add(name)  # nothing new, not about to be acted on, not its turn
                continue
            before[name] = kept[0]
        inline.append(name)
    timeout = min(LIST_TIMEOUT, ctx.spec.farm.host_timeout / 2)
    refresh = REFRESH_SHARE * ctx.spec.farm.host_timeout
    results = await asyncio.gather(*(_marked_list(ctx, n, marks, timeout, now + refresh * (0.5 + draws.random() / 2))
                                     for n in inline), return_exceptions=True)
    outcomes: dict[str, object] = dict(zip(inline, results, strict=True))
    for name in ctx.drivers:
        status = ctx.hosts[name]
        if name in outcomes or name in skipped:
            continue
        probe = status.probe
        if probe is None:
            status.probe = asyncio.ensure_future(_bounded_list(ctx, name, PROBE_TIMEOUT))
        elif probe.done():
            status.probe = None
            outcomes[name] = probe.exception() or probe.result()
    for name, result in outcomes.items():
        status = ctx.hosts[name]
        if isinstance(result, BaseException):
            marks.pop(name, None)
            if not isinstance(result, (FarmhandError, TimeoutError, OSError)):
                log.error("listing host %s failed", name, exc_info=result)
            _host_trouble(ctx, name, status, str(result) or type(result).__name__, now)
            continue
        if status.state != "up":
            ctx.events.add("host.up", f"host {name} answers again (was {status.state} for {now - status.since:.0f}s)")
            status.state, status.since, status.reason = "up", now, ""
        assert isinstance(result, dict)
        listed[name] = result
    for name in list(marks):
        if name not in ctx.drivers:
            del marks[name]
    _declare_dead_hosts(ctx, now)
    # a host asked only because its turn came, with the same mark, lists what it listed before
    fresh = {name for name in outcomes if name not in before or name not in marks or marks[name][0] != before[name]}
    return listed, fresh


async def _marked_list(ctx: FarmContext, name: str, marks: Kept, timeout: float, refresh_at: float,
                       ) -> dict[str, RunningNode]:
    """List a host and keep the listing under the mark its driver gave just before (a listing
    with a dead node is not kept: a dead node is reported once)."""
    driver = ctx.drivers[name]
    mark = driver.listing_mark()
    listing = await _bounded_list(ctx, name, timeout)
    if mark is not None and all(running.alive for running in listing.values()):
        marks[name] = (mark, refresh_at)
    else:
        marks.pop(name, None)
    return listing


async def _bounded_list(ctx: FarmContext, name: str, timeout: float = LIST_TIMEOUT) -> dict[str, RunningNode]:
    async with asyncio.timeout(timeout):
        return await ctx.drivers[name].list()


def _host_trouble(ctx: FarmContext, name: str, status: HostStatus, reason: str, now: float) -> None:
    if reason == "TimeoutError":
        reason = "no answer in time"
    if status.state == "up":
        status.state, status.since, status.reason = "unreachable", now, reason
        ctx.events.add("host.unreachable", f"host {name} does not answer: {reason}")
    elif reason != "no answer in time" or not status.reason:
        status.reason = reason  # a later, more precise verdict (a probe's) replaces a timeout


def _declare_dead_hosts(ctx: FarmContext, now: float) -> None:
    """Unreachable for ``host_timeout``: down, whether or not a probe has answered yet."""
    for name, status in ctx.hosts.items():
        if status.state == "unreachable" and now - status.since >= ctx.spec.farm.host_timeout:
            status.state = "down"
            ctx.events.add("host.down", f"host {name} is down (no answer for {now - status.since:.0f}s): "
                           f"{status.reason}; its nodes will be placed elsewhere")


async def _log_tail(ctx: FarmContext, node: NodeRecord) -> str:
    driver = ctx.drivers.get(node.host)
    if driver is None:
        return ""
    try:
        data = await driver.read_log(node.id, 0, 1 << 20)
    except FarmhandError:
        return ""
    lines = [line for line in data[-2000:].decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def health_of(ctx: FarmContext, node: NodeRecord) -> Health:
    return ctx.health.state(node.id).status
