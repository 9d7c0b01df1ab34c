"""/metrics and the dashboard's live views, without processes: a status snapshot goes in,
Prometheus text comes out and parses; odd load-balancer answers never break a scrape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from farmhand.api.live import sample_from, status_signature
from farmhand.api.metrics import SCALE_KINDS, EventCounter, Snapshot, render
from farmhand.controller.decide.health_state import CheckState
from farmhand.records import Event, Health
from farmhand.store import SqliteStore


def lb_counters(requests: int, **extra: Any) -> dict[str, Any]:
    return {"connections": 3, "requests": requests, "bytes_in": 100, "bytes_out": 900, "errors": 1, "retries": 0,
            "active": 2, "latency": {"count": requests, "p50_ms": 1.5, "p95_ms": 4.0, "p99_ms": None,
                                     "buckets_ms": [[2.0, requests]]}, **extra}


BUILTIN_STATS = {
    "engine": "builtin", "role": "web", "mode": "http", "listen": "127.0.0.1:8080", "workers": 2,
    "requests_per_s": 12.5, "active_connections": 4, "p95_ms": 4.0, "waiting": 0,
    "listeners": {"127.0.0.1:8080": lb_counters(30)},
    "backends": {
        "web-1": lb_counters(20, host="127.0.0.1", port=9001, weight=1, state="ready", ejected=False),
        "web-2": lb_counters(10, host="127.0.0.1", port=9002, weight=2, state="drain", ejected=True),
    },
}


def status(lb_stats: Any = None) -> dict[str, Any]:
    def node(node_id: str, role: str, state: str, health: str, restarts: int = 0) -> dict[str, Any]:
        return {"id": node_id, "role": role, "host": "local", "pid": 1, "port": 1, "state": state, "health": health,
                "started_at": 1.0, "uptime": 5.0, "restarts": restarts, "reason": "", "mark": None}

    return {
        "version": 1, "farm": "demo", "time": 100.0, "shutting_down": False,
        "roles": [
            {"name": "web", "wanted": 3, "running": 2, "healthy": 2, "lb": "127.0.0.1:8080", "lb_mode": "http",
             "states": {"running": 1, "draining": 1, "pending": 1},
             "lb_stats": lb_stats, "min": 1, "max": 5, "failures": 0, "backoff_until": None},
            {"name": "worker", "wanted": 1, "running": 1, "healthy": 0, "lb": None, "lb_mode": None,
             "states": {"starting": 1},
             "lb_stats": None, "min": 0, "max": None, "failures": 2, "backoff_until": None},
        ],
        "nodes": [node("web-1", "web", "running", "healthy"), node("web-2", "web", "draining", "unknown"),
                  node("web-3", "web", "pending", "unknown", restarts=2),
                  node("worker-1", "worker", "starting", "unhealthy", restarts=1)],
        "hosts": [{"name": "local", "driver": "local", "state": "up", "nodes": 4}],
    }


def scrape(snapshot: Snapshot) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Family name -> {sorted labels: value}, through prometheus-client's own parser."""
    parsed: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(render(snapshot).decode()):
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return parsed


def value(parsed: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return parsed[name][tuple(sorted(labels.items()))]


def test_nodes_per_role_and_state_health_restarts_and_scale_decisions() -> None:
    checks = {"web-1": CheckState(Health.HEALTHY, passes=7, checks=9), "worker-1": CheckState(Health.UNHEALTHY, failures=3, checks=4)}
    parsed = scrape(Snapshot(status(), checks, {("role.scaled", "web"): 2}))

    assert value(parsed, "farmhand_nodes", role="web", state="running") == 1
    assert value(parsed, "farmhand_nodes", role="web", state="draining") == 1
    assert value(parsed, "farmhand_nodes", role="worker", state="running") == 0  # every state, zeros too
    assert value(parsed, "farmhand_role_wanted", role="web") == 3
    assert ("role", "worker") not in dict(parsed["farmhand_role_max"]) and value(parsed, "farmhand_role_max", role="web") == 5
    assert value(parsed, "farmhand_node_health", role="worker", node="worker-1", host="local", health="unhealthy") == 1
    assert value(parsed, "farmhand_node_health", role="worker", node="worker-1", host="local", health="healthy") == 0
    assert value(parsed, "farmhand_node_health_checks_total", role="web", node="web-1") == 9
    assert value(parsed, "farmhand_node_health_check_failures", role="worker", node="worker-1") == 3
    assert value(parsed, "farmhand_node_restarts_total", role="web", node="web-3", host="local") == 2
    assert value(parsed, "farmhand_scale_decisions_total", role="web", kind="role.scaled") == 2
    assert value(parsed, "farmhand_scale_decisions_total", role="worker", kind="role.autoscaled") == 0
    assert value(parsed, "farmhand_host_up", host="local", driver="local") == 1


def test_load_balancer_traffic_per_backend_and_listener() -> None:
    parsed = scrape(Snapshot(status(BUILTIN_STATS)))

    assert value(parsed, "farmhand_lb_backend_requests_total", role="web", backend="web-1") == 20
    assert value(parsed, "farmhand_lb_backend_requests_total", role="web", backend="web-2") == 10
    assert value(parsed, "farmhand_lb_backend_bytes_out_total", role="web", backend="web-1") == 900
    assert value(parsed, "farmhand_lb_backend_active", role="web", backend="web-1") == 2
    assert value(parsed, "farmhand_lb_backend_ejected", role="web", backend="web-2") == 1
    assert value(parsed, "farmhand_lb_backend_state", role="web", backend="web-2", state="drain") == 1
    assert value(parsed, "farmhand_lb_backend_latency_seconds", role="web", backend="web-1", quantile="0.95") == 0.004
    assert (("backend", "web-1"), ("quantile", "0.99"), ("role", "web")) not in parsed["farmhand_lb_backend_latency_seconds"]
    assert value(parsed, "farmhand_lb_listener_requests_total", role="web", listen="127.0.0.1:8080") == 30
    assert value(parsed, "farmhand_lb_requests_per_second", role="web") == 12.5
    assert value(parsed, "farmhand_lb_latency_p95_seconds", role="web") == 0.004


def test_odd_balancer_answers_are_left_out_not_fatal() -> None:
    odd = [
        {"backends": ["web-1"], "listeners": "x", "requests_per_s": "fast"},
        {"backends": {"web-1": {"requests": "many", "active": True, "latency": [1, 2]}, "web-2": 7}},
        {"classes": {"fcrdns": {"seen": 3}}, "held": 1, "backends": [{"host": "127.0.0.1"}]},  # the SMTP gate's shape
        {},
    ]
    for lb_stats in odd:
        parsed = scrape(Snapshot(status(lb_stats)))
        assert "farmhand_lb_requests_per_second" not in parsed
        assert value(parsed, "farmhand_nodes", role="web", state="running") == 1
        # counters that are not numbers read as none: 0 (PlaneStats, the one parser of lb stats)
        assert set(parsed.get("farmhand_lb_backend_requests_total", {}).values()) <= {0.0}


class EventsOnly:
    """All that counting events asks of a farm: its event log."""

    def __init__(self, store: SqliteStore) -> None:
        self.events = store.events


def test_scale_events_are_counted_once_each_reading_only_new_ones(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "farm.db")
    counter = EventCounter(EventsOnly(store), SCALE_KINDS)  # type: ignore[arg-type]
    assert counter.refresh() == {}
    for kind, role in [("role.scaled", "web"), ("node.created", "web"), ("role.autoscaled", "web"), ("role.scaled", "db")]:
        store.add_event(Event(1.0, kind, "m", role))
    assert counter.refresh() == {("role.scaled", "web"): 1, ("role.autoscaled", "web"): 1, ("role.scaled", "db"): 1}
    for _ in range(1500):  # more than one page of the store's default limit
        store.add_event(Event(2.0, "role.scaled", "m", "web"))
    assert counter.refresh()[("role.scaled", "web")] == 1501
    assert counter.refresh()[("role.scaled", "web")] == 1501
    store.close()


def test_the_status_stream_ignores_the_clock_and_samples_count_live_nodes() -> None:
    before = status(BUILTIN_STATS)
    later = json.loads(json.dumps(before))
    later["time"] = 200.0
    later["nodes"][0]["uptime"] = 105.0
    assert status_signature(before) == status_signature(later)
    later["nodes"][0]["health"] = "unhealthy"
    assert status_signature(before) != status_signature(later)

    sample = sample_from(before)
    assert sample["t"] == 100.0
    assert sample["nodes"] == {"web": 2, "worker": 1}  # the draining web-2 no longer counts
    assert sample["healthy"] == {"web": 1, "worker": 0}
    assert sample["rps"] == {"web": None, "worker": None}
    before["roles"][0]["requests_per_s"] = 40.0  # the one figure intents.request_rate chose
    assert sample_from(before)["rps"]["web"] == 40.0
