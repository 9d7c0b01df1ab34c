"""User intents: one plain function per thing a user can ask of a running farm.

The REST API calls these (and the CLI calls the API), so a rule such as "scale stays within
min and max" lives in exactly one place. Each validates what it is given and raises
``RequestError`` naming the field at fault; none leaves the farm half-changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from farmhand.controller.decide.reconcile import count_source, wanted_count
from farmhand.controller.loop import Controller
from farmhand.errors import FarmhandError, RequestError
from farmhand.records import ACTIVE_STATES, Event, Health, Mark, NodeRecord, NodeState, RoleState
from farmhand.spec.load import total_capacity
from farmhand.spec.models import MAX_ROLE_NODES

STATUS_VERSION = 1


async def status(ctl: Controller) -> dict[str, Any]:
    """The farm as one JSON object; the keys listed in the README are a stable contract."""
    ctx = ctl.ctx
    now = ctx.clock.now()
    nodes = ctx.store.nodes()
    roles = ctx.store.roles()
    lb_stats = await ctl.data_plane_stats()
    role_rows = []
    for name, role in ctx.spec.roles.items():
        mine = [n for n in nodes if n.role == name]
        state = roles.get(name, RoleState(name))
        role_rows.append({
            "name": name,
            "wanted": wanted_count(role, state),
            "running": sum(1 for n in mine if n.state in (NodeState.STARTING, NodeState.RUNNING) and n.pid),
            "healthy": sum(1 for n in mine if n.state == NodeState.RUNNING),
            "wanted_by": count_source(role, state),
            "lb": role.lb.listen if role.lb else None,
            "lb_mode": role.lb.mode if role.lb else None,
            "lb_state": _lb_state(ctl, name, role),
            "lb_error": ctl.data_plane_error(name),
            "lb_stats": lb_stats.get(name),
            "min": role.lower_bound,
            "max": role.upper_bound,
            "failures": state.failures,
            "backoff_until": state.backoff_until if state.backoff_until > now else None,
            "metrics": ctl.autoscaler.current(name),
            "autoscale": _autoscale_row(ctl, name),
        })
    node_rows = [_node_row(ctl, node, now) for node in nodes]
    host_rows = []
    for name, host in ctx.spec.hosts.items():
        status_ = ctx.hosts.get(name)
        driver = ctx.drivers.get(name)
        host_rows.append({
            "name": name,
            "driver": host.driver,
            "state": status_.state if status_ else "up",
            "drained": bool(status_ and status_.drained),
            "address": driver.address if driver else host.address,
            "nodes": sum(1 for n in nodes if n.host == name),
            "reason": status_.reason if status_ else "",
            "labels": host.labels,
        })
    return {"version": STATUS_VERSION, "farm": ctx.spec.name, "time": now, "shutting_down": ctl.shutting_down,
            "roles": role_rows, "nodes": node_rows, "hosts": host_rows}


def _node_row(ctl: Controller, node: NodeRecord, now: float) -> dict[str, Any]:
    role = ctl.spec.roles.get(node.role)
    if role is not None and role.health is not None and node.state in (NodeState.STARTING, NodeState.RUNNING):
        health = ctl.ctx.health.state(node.id).status
    elif node.state == NodeState.RUNNING:
        health = Health.HEALTHY
    else:
        health = Health.UNKNOWN
    return {
        "id": node.id, "role": node.role, "host": node.host, "pid": node.pid, "port": node.port,
        "state": node.state.value, "health": health.value, "started_at": node.started_at,
        "uptime": (now - node.started_at) if node.started_at and node.pid else None,
        "restarts": node.restarts, "reason": node.reason, "mark": node.mark.value or None,
        "state_since": node.state_since, "on_stop": node.on_stop.value,
        "cpu": (metrics := ctl.autoscaler.node_current(node.id)).get("cpu"), "rss_mb": metrics.get("rss_mb"),
    }


def _lb_state(ctl: Controller, name: str, role: Any) -> str | None:
    """"listening" while the role's data plane serves, "broken" while it cannot (see lb_error)."""
    if role.lb is None:
        return None
    return "listening" if name in ctl.ctx.data_planes else "broken"


def _autoscale_row(ctl: Controller, role: str) -> dict[str, Any] | None:
    """The last autoscaling decision of a role: bounds in force and why the count is what it is."""
    decision = ctl.autoscaler.decisions.get(role)
    if decision is None:
        return None
    return {"min": decision.low, "max": decision.high, "reason": decision.reason}


def scale(ctl: Controller, role_name: str, count: int) -> dict[str, Any]:
    role = _role(ctl, role_name)
    if count < 0:
        raise RequestError(f"count must be 0 or more, not {count}", "count")
    if count < role.lower_bound or (role.upper_bound is not None and count > role.upper_bound):
        bounds = f"{role.lower_bound}..{role.upper_bound if role.upper_bound is not None else ''}"
        raise RequestError(f"role {role_name} must stay within min/max ({bounds}); {count} is outside", "count")
    if count > MAX_ROLE_NODES:
        raise RequestError(f"{count} is more nodes than one role may have (at most {MAX_ROLE_NODES})", "count")
    capacity = total_capacity(ctl.spec)
    if capacity is not None and count > capacity:
        raise RequestError(f"{count} nodes do not fit: the hosts hold at most {capacity} (capacity.nodes)", "count")
    before, after = ctl.scale(role_name, count)
    return {"role": role_name, "before": before, "after": after}


def stop_node(ctl: Controller, node_id: str) -> dict[str, Any]:
    """Stop a node for good: its role's wanted count goes down by one, so it is not replaced."""
    node = _node(ctl, node_id)
    role = _role(ctl, node.role)
    if node.mark == Mark.REMOVE or node.state not in ACTIVE_STATES:
        return {"node": node_id, "state": node.state.value, "message": f"{node_id} is already stopping"}
    state = ctl.ctx.store.roles().get(node.role, RoleState(node.role))
    wanted = wanted_count(role, state)
    if wanted - 1 < role.lower_bound:
        raise RequestError(f"stopping {node_id} would take role {node.role} below its min ({role.lower_bound}); "
                           f"use `farmhand replace {node_id}` to replace it instead", "node")
    ctl.mark(node_id, Mark.REMOVE)
    ctl.scale(node.role, wanted - 1)
    return {"node": node_id, "role": node.role, "wanted": wanted - 1,
            "message": f"{node_id} is stopping; role {node.role} now wants {wanted - 1}"}


def replace_node(ctl: Controller, node_id: str) -> dict[str, Any]:
    """Start a new node, and once it is healthy drain and stop this one."""
    node = _node(ctl, node_id)
    if node.state not in ACTIVE_STATES or node.mark == Mark.REMOVE:
        raise RequestError(f"{node_id} is {node.state.value}; only a pending, starting or running node can be replaced",
                           "node", 409)
    ctl.mark(node_id, Mark.REPLACE)
    ctl.ctx.events.add("node.replace", f"{node_id}: replacement requested", node.role, node_id)
    return {"node": node_id, "message": f"{node_id} will be replaced by a new node, then drained and stopped"}


def migrate(ctl: Controller, node_id: str, host: str) -> dict[str, Any]:
    """Move a node to ``host`` without a failed request: a new node there first, healthy,
    then the load balancer shifts to it and the old one drains and stops."""
    node = _node(ctl, node_id)
    if node.state not in ACTIVE_STATES or node.mark == Mark.REMOVE:
        raise RequestError(f"{node_id} is {node.state.value}; only a running node can be migrated", "node", 409)
    target = _host(ctl, host, "host")
    if host == node.host:
        raise RequestError(f"{node_id} already runs on {host}", "host", 409)
    status_ = ctl.ctx.hosts.get(host)
    if status_ is not None and (status_.state != "up" or status_.drained):
        raise RequestError(f"host {host} is {'drained' if status_.drained else status_.state}; "
                           "it takes no new nodes", "host", 409)
    role = _role(ctl, node.role)
    missing = {k: v for k, v in role.require.items() if target.labels.get(k) != v}
    if missing:
        raise RequestError(f"role {node.role} requires {missing} and host {host} does not have it", "host", 409)
    ctl.mark(node_id, Mark.REPLACE, move_to=host)
    ctl.ctx.events.add("node.migrate", f"{node_id}: migrating from {node.host} to {host}", node.role, node_id)
    return {"node": node_id, "from": node.host, "to": host,
            "message": f"{node_id} moves from {node.host} to {host}: new node first, then drain and stop"}


def drain_host(ctl: Controller, host: str) -> dict[str, Any]:
    """Move every node off a host (for maintenance) and keep new ones away."""
    _host(ctl, host, "host")
    ctl.set_drained(host, True)
    moving = [n for n in ctl.ctx.store.nodes() if n.host == host and n.state in ACTIVE_STATES and n.mark != Mark.REMOVE]
    for node in moving:
        ctl.mark(node.id, Mark.REPLACE)
    ctl.ctx.events.add("host.drain", f"host {host} drained: moving {len(moving)} node(s) off it")
    return {"host": host, "moving": [n.id for n in moving],
            "message": f"host {host} drained; moving {len(moving)} node(s) to other hosts"}


def undrain_host(ctl: Controller, host: str) -> dict[str, Any]:
    _host(ctl, host, "host")
    ctl.set_drained(host, False)
    ctl.ctx.events.add("host.undrain", f"host {host} takes new nodes again")
    return {"host": host, "message": f"host {host} takes new nodes again (running nodes do not move back)"}


async def hosts(ctl: Controller) -> list[dict[str, Any]]:
    """Hosts with their state, load, capacity used and nodes (load asked live, briefly)."""
    nodes = ctl.ctx.store.nodes()
    rows = []
    for name, spec in ctl.spec.hosts.items():
        status_ = ctl.ctx.hosts.get(name)
        driver = ctl.ctx.drivers.get(name)
        load = None
        if driver is not None and (status_ is None or status_.state == "up"):
            try:
                async with asyncio.timeout(2):
                    metrics = await driver.host_metrics()
                load = {"load1": metrics.load1, "cpus": metrics.cpu_count,
                        "memory_available": metrics.memory_available, "memory_total": metrics.memory_total}
            except (FarmhandError, TimeoutError, OSError):
                load = None
        mine = [n for n in nodes if n.host == name]
        rows.append({
            "name": name, "driver": spec.driver, "address": driver.address if driver else spec.address,
            "state": status_.state if status_ else "up", "drained": bool(status_ and status_.drained),
            "reason": status_.reason if status_ else "", "labels": spec.labels, "load": load,
            "capacity": spec.capacity.nodes, "used": len(mine), "nodes": [n.id for n in mine],
        })
    return rows


async def reload(ctl: Controller) -> dict[str, Any]:
    changes = await ctl.reload()
    return {"changes": changes}


def down(ctl: Controller) -> dict[str, Any]:
    ctl.request_shutdown("`farmhand down`")
    return {"message": f"farm {ctl.spec.name} is stopping its nodes"}


def events(ctl: Controller, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    return [event.to_json() for event in ctl.ctx.events.recent(after, limit)]


def follow_events(ctl: Controller, after: int = 0) -> AsyncIterator[Event]:
    return ctl.ctx.events.follow(after)


async def read_log(ctl: Controller, node_id: str, offset: int = 0) -> bytes:
    """A node's log from ``offset``; stopped nodes' logs stay readable on their last host."""
    node = ctl.ctx.store.node(node_id)
    if node is not None:
        driver = ctl.ctx.drivers.get(node.host)
        if driver is None:
            raise RequestError(f"node {node_id} is on host {node.host}, which the farm no longer has", "node", 404)
        return await driver.read_log(node_id, offset)
    # a stopped node: its log stays where it ran (this machine's, for local hosts)
    for driver in ctl.ctx.drivers.values():
        if driver.kind == "local" and await driver.read_log(node_id, 0, 1):
            return await driver.read_log(node_id, offset)
    known = ", ".join(n.id for n in ctl.ctx.store.nodes()) or "none"
    raise RequestError(f"no node {node_id!r} and no log of one (nodes: {known})", "node", 404)


def _role(ctl: Controller, name: str) -> Any:
    role = ctl.spec.roles.get(name)
    if role is None:
        known = ", ".join(ctl.spec.roles) or "none"
        raise RequestError(f"no role {name!r} in farm {ctl.spec.name} (roles: {known})", "role", 404)
    return role


def _host(ctl: Controller, name: str, field: str) -> Any:
    host = ctl.spec.hosts.get(name)
    if host is None:
        raise RequestError(f"no host {name!r} in farm {ctl.spec.name} (hosts: {', '.join(ctl.spec.hosts)})", field, 404)
    return host


def _node(ctl: Controller, node_id: str) -> NodeRecord:
    node = ctl.ctx.store.node(node_id)
    if node is None:
        known = ", ".join(n.id for n in ctl.ctx.store.nodes()) or "none"
        raise RequestError(f"no node {node_id!r} (nodes: {known})", "node", 404)
    return node
