"""The dashboard's one requests/s figure per role (issue 11.18): `status` once showed 8
req/s from the balancer's lagging 10-second average beside the controller's 0. The table
(fed by the status stream) and the charts (fed by history samples) now take the same
figure from one rule, and a role with a fixed count carries it."""

from __future__ import annotations

from typing import Any

from farmhand.api.live import role_request_rate, sample_from
from farmhand.dataplane import PlaneStats
from farmhand.intents import request_rate
from farmhand.spec import parse_farm

FARM = parse_farm('[roles.web]\ncommand = "x"\nlb = { listen = "127.0.0.1:8080" }\n'
                  '[roles.worker]\ncommand = "y"\ncount = 3\n')
WEB, WORKER = FARM.roles["web"], FARM.roles["worker"]


def averaging(rate: float) -> PlaneStats:
    return PlaneStats.parse({"requests_per_s": rate})


def test_the_controllers_figure_wins_over_the_lagging_average() -> None:
    assert request_rate(WEB, {"requests_per_s": 0.0}, averaging(8.0)) == 0.0


def test_the_average_is_the_fallback_and_no_balancer_means_no_figure() -> None:
    assert request_rate(WEB, {}, averaging(8.0)) == 8.0
    assert request_rate(WEB, {}, None) is None
    assert request_rate(WORKER, {"requests_per_s": 5.0}, averaging(8.0)) is None


def test_the_charts_show_what_the_table_shows() -> None:
    roles: list[dict[str, Any]] = [{"name": "web", "requests_per_s": 0.0}, {"name": "worker", "requests_per_s": None}]
    status = {"time": 10.0, "nodes": [], "roles": roles}
    assert [role_request_rate(r) for r in roles] == [0.0, None]
    assert sample_from(status)["rps"] == {"web": 0.0, "worker": None}
