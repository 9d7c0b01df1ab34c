"""The dashboard's server side on a real farm behind a real load balancer: /metrics parses
with prometheus-client's parser and agrees with the farm (nodes per role and state, health,
restarts, scale decisions, traffic per backend); the page, the status stream and the history
are served."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.farmkit import Farm, free_port, wait_for

pytestmark = pytest.mark.slow

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]



def farm_toml(listen: str) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "metrics"
        restart_backoff = "200ms"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        min = 1
        max = 4
        stop_grace = "2s"
        lb = {{ listen = "{listen}", workers = 1, drain_timeout = "2s" }}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        fall = 2
        start_grace = "3s"
        """)


def get(farm: Farm, path: str) -> httpx.Response:
    url, _ = farm.api()
    return httpx.get(url + path, timeout=10, trust_env=False)


def status(farm: Farm) -> dict[str, Any]:
    answer: dict[str, Any] = get(farm, "/api/status").json()
    return answer


def scrape(farm: Farm) -> Samples:
    response = get(farm, "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    parsed: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return parsed


def labelled(parsed: Samples, name: str, **labels: str) -> float:
    return parsed[name][tuple(sorted(labels.items()))]


def first_pushed_status(farm: Farm) -> dict[str, Any]:
    """The first ``status`` event of a new /api/status/stream connection (the read timeout
    is below the stream's keepalive, so a status that is not pushed at once fails)."""
    url, _ = farm.api()
    with httpx.stream("GET", url + "/api/status/stream", timeout=5, trust_env=False) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "status":
                pushed: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return pushed
    raise AssertionError("the status stream ended without a status")


def settled(farm: Farm, count: int) -> dict[str, Any] | None:
    now = status(farm)
    web = now["nodes"]
    ready = [n for n in web if n["state"] == "running" and n["health"] == "healthy"]
    return now if len(web) == count and len(ready) == count and now["roles"][0]["lb_stats"] else None


def test_metrics_parse_and_agree_with_the_farm(make_farm: Callable[..., Farm]) -> None:
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(farm_toml(listen))
    farm.up()
    assert farm.post("/api/roles/web/scale", {"count": 2}).status_code == 200
    wait_for(lambda: settled(farm, 2), 30, "two healthy web nodes behind a balancer")
    victim = status(farm)["nodes"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    after = wait_for(lambda: (s := settled(farm, 2)) and any(n["restarts"] for n in s["nodes"]) and s, 30,
                     "the killed node back, healthy")
    with httpx.Client(trust_env=False, timeout=5) as client:
        for _ in range(30):
            assert client.get(f"http://{listen}/").status_code == 200

    def scraped_traffic() -> Samples | None:
        parsed = scrape(farm)
        served = parsed.get("farmhand_lb_backend_requests_total", {})
        return parsed if sum(served.values()) >= 30 else None

    parsed = wait_for(scraped_traffic, 10, "the balancer's counters in /metrics")
    node_ids = {n["id"] for n in after["nodes"]}
    assert labelled(parsed, "farmhand_nodes", role="web", state="running") == 2
    assert labelled(parsed, "farmhand_nodes", role="web", state="stopping") == 0
    assert labelled(parsed, "farmhand_role_wanted", role="web") == 2
    for node in after["nodes"]:
        assert labelled(parsed, "farmhand_node_health", role="web", node=node["id"], host="local", health="healthy") == 1
        assert labelled(parsed, "farmhand_node_health_checks_total", role="web", node=node["id"]) >= 1
    assert labelled(parsed, "farmhand_node_restarts_total", role="web", node=victim["id"], host="local") == 1
    assert labelled(parsed, "farmhand_scale_decisions_total", role="web", kind="role.scaled") == 1
    assert labelled(parsed, "farmhand_scale_decisions_total", role="web", kind="role.autoscaled") == 0
    backends = {dict(labels)["backend"] for labels in parsed["farmhand_lb_backend_requests_total"]}
    assert node_ids <= backends, "every node is a backend with its own traffic counters"
    assert labelled(parsed, "farmhand_lb_listener_requests_total", role="web", listen=listen) >= 30


def test_the_page_the_status_stream_and_the_history_are_served(make_farm: Callable[..., Farm]) -> None:
    farm = make_farm(farm_toml(f"127.0.0.1:{free_port()}").replace("min = 1\nmax = 4", "count = 1"))
    farm.up()
    page = get(farm, "/")
    assert page.status_code == 200 and "farmhand" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = get(farm, "/web/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]

    first = first_pushed_status(farm)
    assert first["farm"] == "metrics" and [n["id"] for n in first["nodes"]] == ["web-1"]
    # A listener that comes when the farm is quiet gets the status at once too, and fresh.
    again = first_pushed_status(farm)
    assert again["nodes"][0]["pid"] == first["nodes"][0]["pid"] and again["time"] >= first["time"]

    def sampled() -> dict[str, Any] | None:
        samples = get(farm, "/api/history").json()["samples"]
        return samples[-1] if samples and samples[-1]["nodes"] == {"web": 1} else None

    latest = wait_for(sampled, 10, "a history sample with the web node")  # the first may predate it
    assert latest["rps"]["web"] is not None and latest["t"] <= status(farm)["time"]
