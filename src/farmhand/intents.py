"""User intents: one plain function per thing a user can ask of a running farm.

The REST API calls these (and the CLI calls the API), so a rule such as "scale stays within
min and max" lives in exactly one place. Each validates what it is given and raises
``RequestError`` naming the field at fault; none leaves the farm half-changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from farmhand.certs.pem import CertInfo
from farmhand.controller.decide.health_state import (
    CheckState as CheckState,  # re-exported for the faces
)
from farmhand.controller.decide.reconcile import count_source, wanted_count
from farmhand.controller.loop import Controller
from farmhand.dataplane import PlaneStats
from farmhand.errors import RequestError
from farmhand.records import ACTIVE_STATES, Event, Health, Mark, NodeRecord, NodeState, RoleState
from farmhand.spec.load import total_capacity
from farmhand.spec.models import MAX_ROLE_NODES, RoleSpec

STATUS_VERSION = 1
Farm = Controller
"""What the faces hold and pass to every intent; they never look inside it (pyproject's
import-linter contract keeps the API and the CLI from importing the controller)."""


NODE_LIST_LIMIT = 1000
"""Above this many nodes, `status` lists only the nodes that are not running and healthy
(with the counts of all of them), unless the full list is asked for: a farm of 10,000 nodes
answers in milliseconds and a person reads what needs attention."""


async def status(ctl: Controller, nodes: str = "auto", host: str | None = None,
                 role: str | None = None) -> dict[str, Any]:
    """The farm as one JSON object; the keys listed in the README are a stable contract.

    ``nodes``: "all" lists every node, "summary" only those not running healthy, "auto" (the
    default) all up to NODE_LIST_LIMIT nodes; ``host`` and ``role`` keep the list to one host's
    or one role's nodes (the dashboard opens a host that way; ``host`` also keeps ``hosts`` to
    that one). ``nodes_total``, each role's ``states`` and each host's ``states`` always count
    every node; ``nodes_listed`` counts those the filters matched.
    """
    if nodes not in ("auto", "all", "summary"):
        raise RequestError(f'nodes must be "all", "summary" or "auto", not {nodes!r}', "nodes")
    if host is not None:
        _host(ctl, host, "host")
    if role is not None:
        _role(ctl, role)
    spec = ctl.spec
    now = ctl.now()
    records = ctl.nodes()
    roles = ctl.role_states()
    plane_stats = await ctl.plane_stats()
    certificates = ctl.certificates()
    tls_failures = _tls_failures(ctl, spec.roles)
    by_role: dict[str, list[NodeRecord]] = {name: [] for name in spec.roles}
    per_host: dict[str, dict[str, int]] = {name: {} for name in spec.hosts}
    for node in records:
        by_role.setdefault(node.role, []).append(node)
        counts = per_host.setdefault(node.host, {})
        counts[node.state.value] = counts.get(node.state.value, 0) + 1
    listed = [n for n in records if (host is None or n.host == host) and (role is None or n.role == role)]
    matched = len(listed)
    complete = nodes == "all" or (nodes == "auto" and matched <= NODE_LIST_LIMIT)
    if not complete:  # rows only for the nodes that need attention: at rest, a few
        listed = [n for n in listed if n.state != NodeState.RUNNING or _health(ctl, n) != Health.HEALTHY]
    shown = [_node_row(ctl, node, now) for node in listed]
    role_rows = [_role_row(ctl, name, role, by_role.get(name, []), roles.get(name, RoleState(name)),
                           plane_stats.get(name), now) | {"tls": _tls_row(certificates.get(name), tls_failures.get(name))}
                 for name, role in spec.roles.items()]
    host_rows = []
    for name, host_spec in spec.hosts.items():
        if host is not None and name != host:
            continue
        state = ctl.host_state(name)
        host_rows.append({
            "name": name, "driver": host_spec.driver, "state": state.state, "drained": state.drained,
            "address": ctl.host_address(name) or host_spec.address, "nodes": sum(per_host.get(name, {}).values()),
            "states": per_host.get(name, {}), "reason": state.reason, "labels": host_spec.labels,
        })
    return {"version": STATUS_VERSION, "farm": spec.name, "time": now, "shutting_down": ctl.shutting_down,
            "roles": role_rows, "nodes": shown, "nodes_total": len(records), "nodes_listed": matched,
            "nodes_complete": complete,
            "hosts": host_rows}


def _role_row(ctl: Controller, name: str, role: RoleSpec, mine: list[NodeRecord], state: RoleState,
              stats: PlaneStats | None, now: float) -> dict[str, Any]:
    metrics = ctl.role_metrics(name)
    states: dict[str, int] = {}
    for node in mine:
        states[node.state.value] = states.get(node.state.value, 0) + 1
    return {
        "name": name,
        "wanted": wanted_count(role, state),
        "running": sum(1 for n in mine if n.state in (NodeState.STARTING, NodeState.RUNNING) and n.pid),
        "healthy": states.get(NodeState.RUNNING.value, 0),
        "states": states,
        "count": role.count,
        "wanted_by": count_source(role, state),
        "lb": role.lb.listen if role.lb else None,
        "lb_mode": role.lb.mode if role.lb else None,
        "lb_state": None if role.lb is None else ("listening" if ctl.plane_running(name) else "broken"),
        "lb_error": ctl.plane_error(name),
        "lb_stats": dict(stats.raw) if stats is not None else None,
        "lb_pair": _pair_row(role, stats),
        "requests_per_s": request_rate(role, metrics, stats),
        "min": role.lower_bound,
        "max": role.upper_bound,
        "failures": state.failures,
        "backoff_until": state.backoff_until if state.backoff_until > now else None,
        "metrics": metrics,
        "autoscale": _autoscale_row(ctl, name),
    }


def _pair_row(role: RoleSpec, stats: PlaneStats | None) -> dict[str, Any] | None:
    """A load-balancer pair: its address, which member holds it, and each member's VRRP state
    and balancer (as the pair's handle last read them; see farmhand/lb/pair.py)."""
    if role.lb is None or not role.lb.is_pair:
        return None
    seen = stats.raw.get("pair") if stats is not None else None
    if isinstance(seen, dict):
        return dict(seen)
    return {"vip": role.lb.vip_address, "holder": None,
            "members": {name: {"state": "unknown"} for name in role.lb.hosts}}


def _tls_row(served: CertInfo | None, failure: dict[str, Any] | None) -> dict[str, Any] | None:
    """The certificate a role's balancer serves: its names, issuer and expiry, and the last
    failure to issue or load its next one (``_tls_failures``), if that is not behind it."""
    if served is None:
        return None if failure is None else {"names": [], "issuer": None, "not_before": None, "not_after": None,
                                             "self_signed": False, "last_failure": failure}
    return {"names": list(served.names), "issuer": served.issuer, "not_before": served.not_before,
            "not_after": served.not_after, "self_signed": served.self_signed, "last_failure": failure}


TLS_EVENTS_LOOKBACK = 200
"""How many of the newest events ``_tls_failures`` reads."""


def _tls_failures(ctl: Controller, roles: dict[str, RoleSpec]) -> dict[str, dict[str, Any]]:
    """Each HTTPS role's certificate failure that still stands: its latest ``tls.*`` event
    is a ``tls.failed`` (an ``issued`` or ``loaded`` one after it settles it), as
    ``{"ts", "message"}`` with the ACME server's or the file's reason in the message.

    Read from the newest events of this controller's run (its ``controller.started``
    bounds the search): the certificate keeper retries a failure with backoff and says so
    each time, so a standing failure is among them."""
    wanting = {name for name, role in roles.items() if role.lb is not None and role.lb.tls is not None}
    found: dict[str, dict[str, Any]] = {}
    if not wanting:
        return found
    for event in reversed(ctl.events(0, TLS_EVENTS_LOOKBACK)):
        if event.kind == "controller.started":
            break
        if event.role in wanting and event.kind.startswith("tls."):
            wanting.discard(event.role)
            if event.kind == "tls.failed":
                found[event.role] = {"ts": event.ts, "message": event.message}
            if not wanting:
                break
    return found


def request_rate(role: RoleSpec, metrics: dict[str, float], stats: PlaneStats | None) -> float | None:
    """The one requests/s figure shown for a role (status, dashboard table, charts): the
    controller's own (counter deltas between two samples a second or two apart) when it has
    one, else the balancer's 10-second average, else None (no balancer).

    One rule, because the two differ for up to ten seconds after traffic changes (the average
    lags: 8 req/s beside the controller's 0 once a load stopped)."""
    if role.lb is None:
        return None
    value = metrics.get("requests_per_s")
    if value is None and stats is not None:
        value = stats.requests_per_s
    return round(value, 3) if value is not None else None


def _health(ctl: Controller, node: NodeRecord) -> Health:
    role = ctl.spec.roles.get(node.role)
    if role is not None and role.health is not None and node.state in (NodeState.STARTING, NodeState.RUNNING):
        return ctl.health(node.id).status
    return Health.HEALTHY if node.state == NodeState.RUNNING else Health.UNKNOWN


def _node_row(ctl: Controller, node: NodeRecord, now: float) -> dict[str, Any]:
    health = _health(ctl, node)
    metrics = ctl.node_metrics(node.id)
    return {
        "id": node.id, "role": node.role, "host": node.host, "pid": node.pid, "port": node.port,
        "state": node.state.value, "health": health.value, "started_at": node.started_at,
        "uptime": (now - node.started_at) if node.started_at and node.pid else None,
        "restarts": node.restarts, "reason": node.reason, "mark": node.mark.value or None,
        "state_since": node.state_since, "on_stop": node.on_stop.value,
        "cpu": metrics.get("cpu"), "rss_mb": metrics.get("rss_mb"),
    }


def _autoscale_row(ctl: Controller, role: str) -> dict[str, Any] | None:
    """The last autoscaling decision of a role: bounds in force and why the count is what it is."""
    decision = ctl.autoscale_decision(role)
    if decision is None:
        return None
    return {"min": decision.low, "max": decision.high, "reason": decision.reason}


def health_checks(ctl: Controller) -> dict[str, CheckState]:
    """The check state of every node whose role has a health check (for /metrics)."""
    return {node.id: ctl.health(node.id) for node in ctl.nodes()
            if (role := ctl.spec.roles.get(node.role)) is not None and role.health is not None}


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
    state = ctl.role_states().get(node.role, RoleState(node.role))
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
    ctl.note("node.replace", f"{node_id}: replacement requested", node.role, node_id)
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
    state = ctl.host_state(host)
    if state.state != "up" or state.drained:
        raise RequestError(f"host {host} is {'drained' if state.drained else state.state}; "
                           "it takes no new nodes", "host", 409)
    role = _role(ctl, node.role)
    missing = {k: v for k, v in role.require.items() if target.labels.get(k) != v}
    if missing:
        raise RequestError(f"role {node.role} requires {missing} and host {host} does not have it", "host", 409)
    ctl.mark(node_id, Mark.REPLACE, move_to=host)
    ctl.note("node.migrate", f"{node_id}: migrating from {node.host} to {host}", node.role, node_id)
    return {"node": node_id, "from": node.host, "to": host,
            "message": f"{node_id} moves from {node.host} to {host}: new node first, then drain and stop"}


def drain_host(ctl: Controller, host: str) -> dict[str, Any]:
    """Move every node off a host (for maintenance) and keep new ones away."""
    _host(ctl, host, "host")
    ctl.set_drained(host, True)
    moving = [n for n in ctl.nodes() if n.host == host and n.state in ACTIVE_STATES and n.mark != Mark.REMOVE]
    for node in moving:
        ctl.mark(node.id, Mark.REPLACE)
    ctl.note("host.drain", f"host {host} drained: moving {len(moving)} node(s) off it")
    return {"host": host, "moving": [n.id for n in moving],
            "message": f"host {host} drained; moving {len(moving)} node(s) to other hosts"}


def undrain_host(ctl: Controller, host: str) -> dict[str, Any]:
    _host(ctl, host, "host")
    ctl.set_drained(host, False)
    ctl.note("host.undrain", f"host {host} takes new nodes again")
    return {"host": host, "message": f"host {host} takes new nodes again (running nodes do not move back)"}


async def hosts(ctl: Controller) -> list[dict[str, Any]]:
    """Hosts with their state, load, capacity used and nodes (load asked live, briefly, of
    all hosts at once)."""
    names = list(ctl.spec.hosts)
    loads = await asyncio.gather(*(ctl.host_metrics(name) for name in names))
    on_host: dict[str, list[str]] = {name: [] for name in names}
    for node in ctl.nodes():
        on_host.setdefault(node.host, []).append(node.id)
    rows = []
    for name, metrics in zip(names, loads, strict=True):
        spec = ctl.spec.hosts[name]
        state = ctl.host_state(name)
        load = None if metrics is None else {"load1": metrics.load1, "cpus": metrics.cpu_count,
                                             "memory_available": metrics.memory_available,
                                             "memory_total": metrics.memory_total}
        rows.append({
            "name": name, "driver": spec.driver, "address": ctl.host_address(name) or spec.address,
            "state": state.state, "drained": state.drained, "reason": state.reason, "labels": spec.labels,
            "load": load, "capacity": spec.capacity.nodes, "used": len(on_host[name]), "nodes": on_host[name],
        })
    return rows


async def reload(ctl: Controller) -> dict[str, Any]:
    changes = await ctl.reload()
    return {"changes": changes}


def down(ctl: Controller) -> dict[str, Any]:
    ctl.request_shutdown("`farmhand down`")
    return {"message": f"farm {ctl.spec.name} is stopping its nodes"}


MAX_EVENTS = 10_000


def events(ctl: Controller, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """Events after sequence number ``after``, oldest first, at most ``limit`` (the newest
    ones when there are more): page forward by passing the last ``seq`` as ``after``."""
    if limit < 1 or limit > MAX_EVENTS:
        raise RequestError(f"limit must be 1 to {MAX_EVENTS}, not {limit}", "limit")
    if after < 0:
        raise RequestError(f"after must be 0 or more, not {after}", "after")
    return [event.to_json() for event in ctl.events(after, limit)]


def follow_events(ctl: Controller, after: int = 0) -> AsyncIterator[Event]:
    """Events after ``after``, then each new one; ends when the controller stops."""
    return ctl.follow_events(after)


def count_events(ctl: Controller, kinds: frozenset[str], after: int,
                 into: dict[tuple[str, str], int]) -> int:
    """Add to ``into`` how many events of each of ``kinds`` came after ``after``, by (kind,
    role); returns the last seq read (pass it as ``after`` next time: only new events are read)."""
    newest = ctl.events(0, 1)
    top = (newest[-1].seq or 0) if newest else 0
    if top <= after:
        return after
    for event in ctl.events(after, top - after):  # the store answers the newest `limit`: all of them
        if event.kind in kinds:
            key = (event.kind, event.role or "")
            into[key] = into.get(key, 0) + 1
    return top


async def read_log(ctl: Controller, node_id: str, offset: int = 0) -> bytes:
    """A node's log from ``offset``; stopped nodes' logs stay readable on their last host."""
    if offset < 0:
        raise RequestError(f"offset must be 0 or more, not {offset}", "offset")
    return await ctl.read_log(node_id, offset)


def watched(ctl: Controller) -> None:
    """Someone reads the farm now (status, the dashboard's stream while open, /metrics): its
    metrics are sampled at the watched pace for a while, and slowly when nobody looks."""
    ctl.note_read()


def farm_name(ctl: Controller) -> str:
    return ctl.spec.name


def fixed_counts(ctl: Controller) -> dict[str, int | None]:
    """Each role's count in the farm file (None for a role with min and max)."""
    return {name: role.count for name, role in ctl.spec.roles.items()}


def has_check(ctl: Controller, role: str) -> bool:
    spec = ctl.spec.roles.get(role)
    return spec is not None and spec.health is not None


def is_stopped(ctl: Controller) -> bool:
    """Whether the controller has stopped (streams end then)."""
    return ctl.stopped.is_set()


async def until_stopped(ctl: Controller, seconds: float) -> bool:
    """Wait up to ``seconds``; True when the controller stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ctl.stopped.wait()), seconds)
    return ctl.stopped.is_set()


def _role(ctl: Controller, name: str) -> RoleSpec:
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
    node = ctl.node(node_id)
    if node is None:
        known = ", ".join(n.id for n in ctl.nodes()) or "none"
        raise RequestError(f"no node {node_id!r} (nodes: {known})", "node", 404)
    return node


# -- fleet (issue 13): commands to many hosts over the connections the drivers hold ---------

FLEET_MAX_TIMEOUT = 86_400.0
FLEET_MAX_FANOUT = 1024


async def fleet_exec(ctl: Controller, target: str, command: str, timeout: float = 3600.0,
                     fanout: int = 64) -> dict[str, Any]:
    """Run ``command`` on every host ``target`` names (``farmhand.fleet.targets``: hosts,
    ``@group``, ``@role`` = where the role's nodes run, node-set patterns), through the
    drivers' open connections: no handshake. Unreachable hosts are results, not errors."""
    from farmhand.fleet import gather, run, targets

    if not command.strip():
        raise RequestError("command is empty", "command")
    if "\0" in command:
        raise RequestError("command contains a NUL character", "command")
    if not 0 < timeout <= FLEET_MAX_TIMEOUT:
        raise RequestError(f"timeout must be above 0 and at most {FLEET_MAX_TIMEOUT:g}s, not {timeout:g}", "timeout")
    if not 1 <= fanout <= FLEET_MAX_FANOUT:
        raise RequestError(f"fanout must be 1 to {FLEET_MAX_FANOUT}, not {fanout}", "fanout")
    hosts = targets.hosts_of(target, fleet_inventory(ctl))
    fake = [h for h in hosts if ctl.spec.hosts[h].driver == "fake"]
    if fake:
        raise RequestError(f"{targets.fold(fake)}: fake hosts have no shell to run commands in", "target")
    drivers = {h: ctl.driver(h) for h in hosts}  # the controller's own: their connections are open
    unusable = [h for h, d in drivers.items() if d is None]
    if unusable:
        reasons = "; ".join(f"{h}: {ctl.host_state(h).reason or 'no driver'}" for h in unusable)
        raise RequestError(f"{targets.fold(unusable)} cannot be used now ({reasons})", "target", 409)
    usable = {h: d for h, d in drivers.items() if d is not None}
    results = await run.run_all(usable, command, timeout=timeout, fanout=fanout)
    return {"target": target, "nodes": targets.fold(hosts), "status": gather.exit_status(results),
            "results": [r.to_json() for r in results]}


def fleet_inventory(ctl: Controller) -> Any:
    """Groups from the farm file, and each role's hosts as the controller sees them now."""
    from farmhand.fleet import targets

    role_hosts: dict[str, list[str]] = {name: [] for name in ctl.spec.roles}
    for node in ctl.nodes():
        if node.state in ACTIVE_STATES and node.host not in role_hosts.setdefault(node.role, []):
            role_hosts[node.role].append(node.host)
    return targets.inventory_of(ctl.spec, role_hosts)


def fleet_nodeset(ctl: Controller, target: str) -> dict[str, Any]:
    """A target expanded against the running farm (roles as placed now)."""
    from farmhand.fleet import targets

    names = targets.expand(target, fleet_inventory(ctl))
    return {"target": target, "nodes": names, "folded": targets.fold(names), "count": len(names)}
