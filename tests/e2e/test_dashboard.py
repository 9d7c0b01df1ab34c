"""The dashboard in a real browser against a real farm (issue 7): the map shows every node,
scale-up adds a tile, a node's panel shows its log, a killed node's tile turns failing and
comes back healthy (and the event feed filters to its failure), and a wrong or missing token
is refused and says so."""

from __future__ import annotations

import os
import re
import signal
import textwrap

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Dashboard, FarmMaker, api_events, api_status
from tests.integration.farmkit import wait_for

pytestmark = pytest.mark.slow


def two_roles(web: str = "min = 2\nmax = 4", backoff: str = "1s") -> str:
    """A web role with a health check (and bounds, so the dashboard can scale it) and a
    plain worker role; no load balancer, so nothing here waits on another engine."""
    return textwrap.dedent(f"""\
        [farm]
        name = "e2e"
        restart_backoff = "{backoff}"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        stop_grace = "2s"
        {web}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        timeout = "500ms"
        fall = 2
        start_grace = "3s"

        [roles.worker]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = 1
        stop_grace = "2s"
        """)


def test_the_map_shows_every_node_and_scale_up_adds_a_tile(make_farm: FarmMaker, dashboard: Dashboard) -> None:
    farm = make_farm(two_roles())
    farm.up()
    nodes = api_status(farm)["nodes"]
    dashboard.open(farm)
    page = dashboard.page

    expect(page.locator(".tile")).to_have_count(len(nodes))
    for node in nodes:
        expect(dashboard.tile(node["id"])).to_contain_text(node["id"])
        expect(dashboard.tile(node["id"])).to_have_attribute("data-visual", "healthy")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert "token" not in page.url, "the token must leave the address bar"
    expect(page.locator("#token-state")).to_contain_text("token set")
    dashboard.shot("map")

    page.get_by_role("button", name="Scale web up to 3").click()
    expect(page.locator('.tile[data-node^="web-"]')).to_have_count(3)
    new_ids = wait_for(lambda: {n["id"] for n in api_status(farm)["nodes"]} - {n["id"] for n in nodes}, 10, "the new node")
    (new_id,) = new_ids
    expect(dashboard.tile(new_id)).to_have_attribute("data-visual", "healthy")
    expect(page.locator('tr[data-role="web"] .counts')).to_have_text("3 · 3 · 3")
    expect(page.locator("#events .event[data-kind='role.scaled']").first).to_contain_text("2 -> 3")
    dashboard.shot("scaled-up")
    assert api_status(farm)["roles"][0]["wanted"] == 3

    dashboard.tile(new_id).get_by_role("button").click()
    panel = page.locator("#node-panel")
    expect(panel.locator(".node-id")).to_have_text(new_id)
    expect(panel.locator(".log")).to_contain_text(f"{new_id} listening on")
    expect(panel.get_by_role("button", name="Replace")).to_be_visible()
    expect(panel.locator("form.migrate")).to_be_hidden()  # one host: nowhere to move a node to
    dashboard.shot("node-panel")


def test_a_killed_node_turns_failing_then_comes_back_healthy(make_farm: FarmMaker, dashboard: Dashboard) -> None:
    # An early failure waits out restart_backoff before the restart: the failing state
    # lasts that long, well above the status stream's 250 ms pace.
    farm = make_farm(two_roles(web="count = 2", backoff="1500ms"))
    farm.up()
    dashboard.open(farm)
    victim = next(n for n in api_status(farm)["nodes"] if n["role"] == "web")
    tile = dashboard.tile(victim["id"])
    expect(tile).to_have_attribute("data-visual", "healthy")

    os.kill(victim["pid"], signal.SIGKILL)
    expect(tile).to_have_attribute("data-visual", "failing")
    expect(tile).to_contain_text("failing")
    dashboard.shot("failing")

    expect(tile).to_have_attribute("data-restarts", "1")
    expect(tile).to_have_attribute("data-visual", "healthy")
    expect(tile).not_to_have_attribute("data-pid", str(victim["pid"]))
    expect(dashboard.page.locator("#events .event[data-kind='node.failed']").first).to_contain_text(victim["id"])
    restarted = next(n for n in api_status(farm)["nodes"] if n["id"] == victim["id"])
    assert restarted["pid"] != victim["pid"] and restarted["health"] == "healthy"

    events = dashboard.page.locator("#events .event")
    dashboard.page.get_by_label("Kind", exact=True).select_option("node.failed")
    expect(events).to_have_count(1)
    expect(events).to_contain_text(re.compile(rf"{victim['id']}\b.*killed by signal 9"))  # wording per issue 10.21
    dashboard.page.get_by_label("Role", exact=True).select_option("worker")
    expect(events).to_have_count(0)
    expect(dashboard.page.locator("#events")).to_contain_text("No event matches these filters")
    dashboard.page.get_by_label("Role", exact=True).select_option("web")
    expect(events).to_have_count(1)
    dashboard.shot("healthy-again")


def test_a_wrong_or_missing_token_is_refused_and_says_so(make_farm: FarmMaker, dashboard: Dashboard) -> None:
    farm = make_farm(two_roles())
    farm.up()
    page = dashboard.page

    dashboard.open(farm, token=None)
    expect(page.locator("#token-state")).to_contain_text("no token")
    page.get_by_role("button", name="Scale web up to 3").click()
    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("needs the token")
    dashboard.shot("missing-token")

    dashboard.open(farm, token="not-the-token")
    page.get_by_role("button", name="Scale web up to 3").click()
    expect(notice).to_contain_text(re.compile(r"refused: wrong token"))
    expect(page.locator("#token-state")).to_contain_text("token refused")
    expect(page.get_by_label("Token (from .farmhand/token)")).to_be_focused()
    dashboard.shot("wrong-token")

    assert api_status(farm)["roles"][0]["wanted"] == 2, "a refused change must change nothing"
    assert not [e for e in api_events(farm) if e["kind"] == "role.scaled"]
