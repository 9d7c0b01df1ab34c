"""The dashboard's one requests/s figure per role (issue 11.18): `status` once showed 8
req/s from the balancer's lagging 10-second average beside the controller's 0. The table
(fed by the status stream) and the charts (fed by history samples) now take the same
figure from one rule, and a role with a fixed count carries it."""

from __future__ import annotations

from typing import Any

from farmhand.api.live import for_dashboard, role_request_rate, sample_from


def status(metrics: dict[str, float] | None, average: float | None, lb: str | None = "127.0.0.1:8080") -> dict[str, Any]:
    role = {"name": "web", "lb": lb, "metrics": metrics or {},
            "lb_stats": {"requests_per_s": average} if average is not None else None}
    return {"time": 10.0, "nodes": [], "roles": [role, {"name": "worker", "lb": None, "metrics": {}, "lb_stats": None}]}


def test_the_controllers_figure_wins_over_the_lagging_average_everywhere() -> None:
    after_the_load_stopped = status({"requests_per_s": 0.0}, 8.0)
    shown = for_dashboard(after_the_load_stopped, {"web": None, "worker": 3})
    assert [r["requests_per_s"] for r in shown["roles"]] == [0.0, None]
    assert sample_from(shown)["rps"] == {"web": 0.0, "worker": None}, "the charts show what the table shows"


def test_the_average_is_the_fallback_and_no_balancer_means_no_figure() -> None:
    assert role_request_rate(status(None, 8.0)["roles"][0]) == 8.0
    assert role_request_rate(status(None, None)["roles"][0]) is None
    assert role_request_rate(status({"requests_per_s": 5.0}, 8.0, lb=None)["roles"][0]) is None


def test_a_fixed_count_travels_with_its_role() -> None:
    shown = for_dashboard(status(None, None), {"web": None, "worker": 3})
    assert [r["count"] for r in shown["roles"]] == [None, 3]
