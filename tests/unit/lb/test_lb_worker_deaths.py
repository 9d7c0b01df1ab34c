"""A builtin worker's death: its counts are kept so totals never go backwards (issue 10
#20), and restarts reach Prometheus as ``farmhand_lb_worker_restarts_total`` (#19)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from farmhand.api.metrics import Snapshot, render
from farmhand.lb.builtin import histogram
from farmhand.lb.builtin import stats as lb_stats
from farmhand.lb.settings import EngineSettings

SETTINGS = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=8080, workers=2)


def counters(requests: int, active: int = 0, **extra: Any) -> dict[str, Any]:
    hist = histogram.new()
    hist[3] = requests
    return {"connections": requests, "requests": requests, "bytes_in": 10 * requests, "bytes_out": 20 * requests,
            "errors": 0, "retries": 0, "active": active, "hist": histogram.to_sparse(hist), **extra}


def answer(requests: int, active: int = 0) -> dict[str, Any]:
    backend = counters(requests, host="127.0.0.1", port=9001, weight=1, state="ready", ejected=False)
    return {"listener": counters(requests, active), "backends": {"n1": backend}, "waiting": 0, "requests_per_s": 1.0}


def totals(merged: dict[str, Any]) -> tuple[int, ...]:
    listener = merged["listeners"]["127.0.0.1:8080"]
    backend = merged["backends"]["n1"]
    return (listener["requests"], listener["bytes_out"], listener["latency"]["count"],
            backend["requests"], backend["bytes_in"], backend["latency"]["count"])


def test_a_dead_workers_last_counts_stay_in_the_totals() -> None:
    retired = lb_stats.Retired()
    window = lb_stats.Window()
    before = lb_stats.merge(SETTINGS, "127.0.0.1:8080", [answer(100, active=3), answer(50)], set(), window, retired)
    retired.fold(answer(100, active=3))  # worker 0 died; its replacement starts from zero
    after = lb_stats.merge(SETTINGS, "127.0.0.1:8080", [answer(0), answer(51)], set(), window, retired)
    assert all(a >= b for a, b in zip(totals(after), totals(before), strict=True)), (totals(before), totals(after))
    assert totals(after)[0] == 151
    assert after["active_connections"] == 0, "a dead worker's connections are no longer open"


def test_worker_restarts_are_a_prometheus_counter() -> None:
    stats = {"engine": "builtin", "listeners": {}, "backends": {}, "worker_restarts": 3, "worker_deaths": []}
    status = {"farm": "demo", "roles": [{"name": "web", "lb_stats": stats}], "nodes": [], "hosts": []}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(render(Snapshot(status)).decode())
        for sample in family.samples
    }
    assert samples[("farmhand_lb_worker_restarts_total", (("role", "web"),))] == 3
