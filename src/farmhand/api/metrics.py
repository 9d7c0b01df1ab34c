"""``/metrics``: the farm in Prometheus text format, built fresh for every scrape.

Why a snapshot and a per-request registry rather than long-lived prometheus-client
metrics: the truth lives in the store, the health monitor and the load balancers' own
counters. Copying it into global gauges would be a second, drifting copy. A scrape takes one
async snapshot (the balancers answer over their control sockets), and a ``FarmCollector``
turns it into families, so every series is exactly what the controller knows right now.

Load-balancer stats come in the status JSON as the engine sent them (``lb_stats``) and are
read through ``farmhand.dataplane.PlaneStats``, the one parser of that format: a key that is
missing or not a number reads as none (counters as 0) rather than breaking the scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from farmhand import intents
from farmhand.dataplane import BackendStats, Counters, PlaneStats
from farmhand.records import Health, NodeState

SCALE_KINDS = ("role.scaled", "role.autoscaled")
LB_COUNTERS = {
    "connections": "Connections (listener: accepted from clients; backend: opened to it)",
    "requests": "Requests answered (tcp: connections that got a first byte)",
    "bytes_in": "Bytes sent towards the backends",
    "bytes_out": "Bytes sent towards the clients",
    "errors": "Errors (listener: answered with an error; backend: failed attempts)",
    "retries": "Attempts moved to another backend",
}
LATENCY_QUANTILES = (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms"))


class EventCounter:
    """Counts events of some kinds per (kind, role), reading only new events on each call,
    so a scrape after a week of events does not reread the whole log."""

    def __init__(self, farm: intents.Farm, kinds: tuple[str, ...]) -> None:
        self._farm = farm
        self._kinds = frozenset(kinds)
        self._after = 0
        self.counts: dict[tuple[str, str], int] = {}

    def refresh(self) -> dict[tuple[str, str], int]:
        self._after = intents.count_events(self._farm, self._kinds, self._after, self.counts)
        return self.counts


@dataclass
class Snapshot:
    """What one scrape reports: the status JSON plus what it leaves out."""

    status: dict[str, Any]
    checks: dict[str, intents.CheckState] = field(default_factory=dict)
    scale_events: dict[tuple[str, str], int] = field(default_factory=dict)


async def take_snapshot(farm: intents.Farm, scale_events: EventCounter) -> Snapshot:
    intents.watched(farm)
    status = await intents.status(farm, nodes="all")
    return Snapshot(status, intents.health_checks(farm), dict(scale_events.refresh()))


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(snapshot))
    return generate_latest(registry)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class FarmCollector(Collector):
    """Prometheus families for one snapshot of the farm."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._roles()
        yield from self._nodes()
        yield from self._health()
        yield from self._hosts()
        yield from self._scale_decisions()
        yield from self._balancers()
        yield from self._certificates()

    def _certificates(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily("farmhand_tls_cert_expiry_seconds", "When the certificate a role's balancer "
                                   "serves expires (Unix time)", labels=["role", "names", "issuer"])
        for role in self.snapshot.status["roles"]:
            served = role.get("tls")
            if isinstance(served, dict) and (value := _number(served.get("not_after"))) is not None:
                expiry.add_metric([role["name"], ",".join(served.get("names") or []), str(served.get("issuer", ""))],
                                  value)
        yield expiry

    def _roles(self) -> Iterator[Metric]:
        status = self.snapshot.status
        info = GaugeMetricFamily("farmhand_farm_info", "The farm this controller runs", labels=["farm"])
        info.add_metric([str(status.get("farm", ""))], 1)
        yield info
        for key, help_text in (("wanted", "Nodes the role wants"),
                               ("running", "Nodes of the role with a process"),
                               ("healthy", "Nodes of the role that are running and healthy"),
                               ("min", "The role's lower bound"), ("max", "The role's upper bound"),
                               ("failures", "Early failures in a row (restart backoff)")):
            family = GaugeMetricFamily(f"farmhand_role_{key}", help_text, labels=["role"])
            for role in status["roles"]:
                value = _number(role.get(key))
                if value is not None:
                    family.add_metric([role["name"]], value)
            yield family

    def _nodes(self) -> Iterator[Metric]:
        status = self.snapshot.status
        counts = {(role["name"], state.value): 0 for role in status["roles"] for state in NodeState}
        for node in status["nodes"]:
            key = (node["role"], node["state"])
            counts[key] = counts.get(key, 0) + 1
        nodes = GaugeMetricFamily("farmhand_nodes", "Nodes per role and state", labels=["role", "state"])
        for (role, state), count in sorted(counts.items()):
            nodes.add_metric([role, state], count)
        yield nodes
        restarts = CounterMetricFamily("farmhand_node_restarts", "Times the node's slot was restarted",
                                       labels=["role", "node", "host"])
        uptime = GaugeMetricFamily("farmhand_node_uptime_seconds", "Seconds since the node's process started",
                                   labels=["role", "node", "host"])
        for node in status["nodes"]:
            labels = [node["role"], node["id"], node["host"]]
            restarts.add_metric(labels, node.get("restarts") or 0)
            if (value := _number(node.get("uptime"))) is not None:
                uptime.add_metric(labels, value)
        yield restarts
        yield uptime

    def _health(self) -> Iterator[Metric]:
        status = self.snapshot.status
        health = GaugeMetricFamily("farmhand_node_health", "1 for the node's current health (healthy, unhealthy, unknown)",
                                   labels=["role", "node", "host", "health"])
        checks = CounterMetricFamily("farmhand_node_health_checks", "Health checks run on the node's current process",
                                     labels=["role", "node"])
        failing = GaugeMetricFamily("farmhand_node_health_check_failures", "Failed health checks in a row",
                                    labels=["role", "node"])
        for node in status["nodes"]:
            for value in Health:
                health.add_metric([node["role"], node["id"], node["host"], value.value],
                                  1 if node.get("health") == value.value else 0)
            check = self.snapshot.checks.get(node["id"])
            if check is not None:
                checks.add_metric([node["role"], node["id"]], check.checks)
                failing.add_metric([node["role"], node["id"]], check.failures)
        yield health
        yield checks
        yield failing

    def _hosts(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("farmhand_host_up", "1 when the host is up (drained hosts are up)",
                               labels=["host", "driver"])
        nodes = GaugeMetricFamily("farmhand_host_nodes", "Nodes placed on the host", labels=["host"])
        for host in self.snapshot.status.get("hosts", []):
            up.add_metric([host["name"], str(host.get("driver", ""))], 1 if host.get("state") in ("up", "drained") else 0)
            nodes.add_metric([host["name"]], host.get("nodes") or 0)
        yield up
        yield nodes

    def _scale_decisions(self) -> Iterator[Metric]:
        family = CounterMetricFamily("farmhand_scale_decisions", "Scale decisions (by request or autoscaling)",
                                     labels=["role", "kind"])
        counts = {(kind, role["name"]): 0 for role in self.snapshot.status["roles"] for kind in SCALE_KINDS}
        counts.update(self.snapshot.scale_events)
        for (kind, role), count in sorted(counts.items()):
            family.add_metric([role, kind], count)
        yield family

    def _balancers(self) -> Iterator[Metric]:
        roles = [(role["name"], PlaneStats.parse(role["lb_stats"])) for role in self.snapshot.status["roles"]
                 if isinstance(role.get("lb_stats"), dict)]
        yield from _role_level(roles)
        yield from _worker_restarts(roles)
        yield from _counters(roles, "backend")
        yield from _counters(roles, "listener")


def _role_level(roles: list[tuple[str, PlaneStats]]) -> Iterator[Metric]:
    for key, name, help_text, scale in (
        ("requests_per_s", "farmhand_lb_requests_per_second", "Requests/s over the last ~10 s (tcp: connections/s)", 1.0),
        ("active_connections", "farmhand_lb_active_connections", "Client connections open now", 1.0),
        ("waiting", "farmhand_lb_waiting", "Requests waiting for a usable backend", 1.0),
        ("p95_ms", "farmhand_lb_latency_p95_seconds", "Latency p95 over the last ~10 s", 0.001),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["role"])
        for role, stats in roles:
            if (value := getattr(stats, key)) is not None:
                family.add_metric([role], value * scale)
        yield family


def _worker_restarts(roles: list[tuple[str, PlaneStats]]) -> Iterator[Metric]:
    """Balancer workers that died and were started again (``farmhand_lb_worker_restarts_total``)."""
    family = CounterMetricFamily("farmhand_lb_worker_restarts", "Load-balancer worker processes that died "
                                 "and were started again while the balancer ran", labels=["role"])
    for role, stats in roles:
        family.add_metric([role], stats.worker_restarts)
    yield family


def _counters(roles: list[tuple[str, PlaneStats]], kind: str) -> Iterator[Metric]:
    """Traffic per backend (``kind="backend"``) or per listening address."""
    label = "backend" if kind == "backend" else "listen"
    rows: list[tuple[str, str, Counters]] = [
        (role, name, counters) for role, stats in roles for name, counters in (
            ((b, s.counters) for b, s in stats.backends.items()) if kind == "backend" else stats.listeners.items())]
    for key, help_text in LB_COUNTERS.items():
        family = CounterMetricFamily(f"farmhand_lb_{kind}_{key}", help_text, labels=["role", label])
        for role, name, counters in rows:
            family.add_metric([role, name], getattr(counters, key))
        yield family
    active = GaugeMetricFamily(f"farmhand_lb_{kind}_active", "In flight now (backend: requests; listener: "
                               "client connections)", labels=["role", label])
    latency = GaugeMetricFamily(f"farmhand_lb_{kind}_latency_seconds", "Latency quantiles since the engine started",
                                labels=["role", label, "quantile"])
    for role, name, counters in rows:
        active.add_metric([role, name], counters.active)
        for quantile, key in LATENCY_QUANTILES:
            if (value := getattr(counters.latency, key)) is not None:
                latency.add_metric([role, name, quantile], value / 1000)
    yield active
    yield latency
    if kind == "backend":
        yield from _backend_states([(role, name, backend) for role, stats in roles
                                    for name, backend in stats.backends.items()])


def _backend_states(rows: list[tuple[str, str, BackendStats]]) -> Iterator[Metric]:
    ejected = GaugeMetricFamily("farmhand_lb_backend_ejected", "1 while passive health keeps the backend out",
                                labels=["role", "backend"])
    weight = GaugeMetricFamily("farmhand_lb_backend_weight", "The backend's balancing weight", labels=["role", "backend"])
    state = GaugeMetricFamily("farmhand_lb_backend_state", "1 for the backend's state (ready, drain, removed)",
                              labels=["role", "backend", "state"])
    for role, name, backend in rows:
        if backend.ejected is not None:
            ejected.add_metric([role, name], 1 if backend.ejected else 0)
        if backend.weight is not None:
            weight.add_metric([role, name], backend.weight)
        if backend.state:
            for known in ("ready", "drain", "removed"):
                state.add_metric([role, name, known], 1 if backend.state == known else 0)
    yield ejected
    yield weight
    yield state
