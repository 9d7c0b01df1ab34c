"""Summing worker stats into one answer."""

from __future__ import annotations

from farmhand.lb.builtin import histogram, stats
from farmhand.lb.builtin.table import Counters
from farmhand.lb.settings import EngineSettings


def worker_answer(requests: int, active: int, latency: float) -> dict[str, object]:
    listener = Counters()
    listener.requests = requests
    listener.active = active
    listener.hist[histogram.bucket_of(latency)] = requests
    backend = listener.to_json() | {"host": "127.0.0.1", "port": 1, "weight": 1, "state": "ready", "ejected": False}
    return {"listener": listener.to_json(), "backends": {"a": backend}, "retired": Counters().to_json(),
            "waiting": 1, "requests_per_s": 10.0}


def test_merge_sums_workers_and_reports_role_level_figures() -> None:
    settings = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=8080)
    merged = stats.merge(settings, "127.0.0.1:8080", [worker_answer(10, 2, 0.001), worker_answer(30, 1, 0.004)], {"a"}, stats.Window())
    assert merged["requests_per_s"] == 20.0
    assert merged["active_connections"] == 3
    assert merged["waiting"] == 2
    listener = merged["listeners"]["127.0.0.1:8080"]
    assert listener["requests"] == 40 and listener["latency"]["count"] == 40
    assert merged["backends"]["a"]["requests"] == 40 and merged["backends"]["a"]["ejected"] is True
    assert 3.0 < merged["p95_ms"] < 5.0
    for key in stats.COUNTERS:
        assert key in listener


def test_the_window_reports_only_recent_latency() -> None:
    window = stats.Window()
    old = histogram.new()
    old[histogram.bucket_of(1.0)] = 100
    assert window.recent(old, now=0.0) == old
    now = list(old)
    now[histogram.bucket_of(0.001)] = 5
    recent = window.recent(now, now=stats.WINDOW + 1)
    assert sum(recent) == 5
    restarted = histogram.new()  # a restarted worker's counters start again at zero
    assert sum(window.recent(restarted, now=2 * stats.WINDOW + 2)) == 0
