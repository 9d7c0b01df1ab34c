"""Observe: what runs on each host, how healthy it is, what is in flight through the load
balancers, as a ``World`` for the pure decisions. Observing only records: adopting known
processes and stopping strays are decided (``decide/passive.py``) and acted on like any other
action. The one state kept here is each host's (up, unreachable, down), which is what a host's
answers mean rather than a decision about nodes."""

from __future__ import annotations

import asyncio
import logging

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


async def observe(ctx: FarmContext, planes: DataPlanes, *, shutting_down: bool,
                  start_failures: dict[str, str]) -> World:
    now = ctx.clock.now()
    listed = await _list_hosts(ctx, now)
    nodes = ctx.store.nodes()
    known = {(node.host, node.id): node for node in nodes}
    adoptable, strays = [], []
    for host_name, running_nodes in listed.items():
        for node_id, running in running_nodes.items():
            if not running.alive:
                continue
            process = ProcessSeen(host_name, node_id, running.pid, running.started_at)
            record = known.get((host_name, node_id))
            if record is None:
                strays.append(process)
            elif (record.pid, record.started_at) != (running.pid, running.started_at):
                adoptable.append(process)
    seen: dict[str, NodeSeen] = {}
    for node in nodes:
        if node.state not in LIVE_STATES:
            continue
        host = ctx.hosts.get(node.host, HostStatus())
        if host.state == "unreachable":
            seen[node.id] = NodeSeen(alive=True, health=ctx.health.state(node.id).status)
            continue
        found = listed.get(node.host, {}).get(node.id)
        if found is None or not found.alive:
            # a down host cannot tell why its nodes died: asking it would only wait for SSH
            tail = await _log_tail(ctx, node) if host.state == "up" else ""
            seen[node.id] = NodeSeen(False, found.exit_code if found else None, log_tail=tail)
            continue
        check = ctx.health.state(node.id)
        if node.state == NodeState.DRAINING:
            seen[node.id] = NodeSeen(True, None, check.status, check.detail, await planes.in_flight(node.role, node.id))
        elif check.status == Health.HEALTHY and not check.detail:
            seen[node.id] = ALIVE_AND_HEALTHY  # the common case at rest: one shared record
        else:
            seen[node.id] = NodeSeen(True, None, check.status, check.detail)
    return World(now, seen, _host_views(ctx), frozenset(planes.running), shutting_down,
                 adoptable=tuple(adoptable), strays=tuple(strays), start_failures=dict(start_failures))


async def _list_hosts(ctx: FarmContext, now: float) -> dict[str, dict[str, RunningNode]]:
    """Listings of the hosts that answer. A host that is up is asked inline (bounded by
    LIST_TIMEOUT); one that is not is probed in the background, so a dead or misconfigured
    host never slows the ticks of the others."""
    listed: dict[str, dict[str, RunningNode]] = {}
    inline = [n for n in ctx.drivers if ctx.hosts.setdefault(n, HostStatus(since=now)).state == "up"]
    timeout = min(LIST_TIMEOUT, ctx.spec.farm.host_timeout / 2)
    results = await asyncio.gather(*(_bounded_list(ctx, n, timeout) for n in inline), return_exceptions=True)
    outcomes: dict[str, object] = dict(zip(inline, results, strict=True))
    for name in ctx.drivers:
        status = ctx.hosts[name]
        if name in outcomes:
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
            if not isinstance(result, (FarmhandError, TimeoutError, OSError)):
                log.error("listing host %s failed", name, exc_info=result)
            _host_trouble(ctx, name, status, str(result) or type(result).__name__, now)
            continue
        if status.state != "up":
            ctx.events.add("host.up", f"host {name} answers again (was {status.state} for {now - status.since:.0f}s)")
            status.state, status.since, status.reason = "up", now, ""
        assert isinstance(result, dict)
        listed[name] = result
    _declare_dead_hosts(ctx, now)
    return listed


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


def _host_views(ctx: FarmContext) -> dict[str, HostView]:
    views = {}
    for name, spec in ctx.spec.hosts.items():
        status = ctx.hosts.get(name, HostStatus())
        # only a host that answers takes new nodes; nodes already on an unreachable one are
        # left alone until it is declared down (observe reports them as still alive)
        views[name] = HostView(name, up=status.state == "up" and name in ctx.drivers, drained=status.drained,
                               labels=dict(spec.labels), max_nodes=spec.capacity.nodes, reason=status.reason)
    return views


def health_of(ctx: FarmContext, node: NodeRecord) -> Health:
    return ctx.health.state(node.id).status
