"""The dashboard of a large farm, on the fake driver (issue 12.3): 2,000 simulated nodes on
200 hosts (plus one slow host) run through the real controller, API and status stream with
no node process. The map folds: each host is a region with its nodes counted by state, in
words and icons; opening one (a click, or Enter) shows its tiles, and it closes again (the
Close button, or Escape). Nodes that need attention keep their own tiles, and their host
comes first."""

from __future__ import annotations

import re
import textwrap

import httpx
import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.conftest import Dashboard, FarmMaker, api_status
from tests.integration.farmkit import Farm, wait_for

pytestmark = pytest.mark.slow

HOSTS, PER_HOST, NODES = 200, 12, 2000
FARM = textwrap.dedent(f"""\
    [farm]
    name = "large"

    [hosts.sim]
    driver = "fake"
    count = {HOSTS}
    capacity = {{ nodes = {PER_HOST} }}
    labels = {{ pool = "sim" }}

    # One host whose nodes boot for an hour: whatever runs there stays "starting".
    [hosts.slow]
    driver = "fake"
    count = 1
    labels = {{ pool = "slow" }}
    fake = {{ boot_time = "1h" }}

    [roles.web]
    command = "app --port {{port}}"
    count = {NODES}
    require = {{ pool = "sim" }}
    health = {{ type = "http", path = "/health", interval = "1s" }}

    [roles.batch]
    command = "app --port {{port}}"
    count = 0
    require = {{ pool = "slow" }}
    health = {{ type = "http", path = "/health", interval = "1s", start_grace = "1h" }}
    """)


def host_region(dashboard: Dashboard, name: str) -> Locator:
    return dashboard.page.locator(f'#hosts .fold[data-key="{name}"]')


def test_the_fake_driver_farm_of_2000_nodes_folds_hosts_into_counts_until_opened(
        make_farm: FarmMaker, dashboard: Dashboard) -> None:
    farm = make_farm(FARM)
    farm.up()  # every web node healthy
    status = api_status(farm)
    assert status["nodes_total"] == NODES and status["nodes_complete"] is False
    hosts = {h["name"]: h for h in status["hosts"]}
    dashboard.open(farm)
    page = dashboard.page

    expect(page.locator("#hosts")).to_have_attribute("data-mode", "folded")
    expect(page.locator("#hosts .fold")).to_have_count(HOSTS + 1)
    expect(page.locator("#map-summary")).to_contain_text(f"{NODES} nodes on {HOSTS + 1} hosts: {NODES} healthy")
    expect(page.locator(".tile")).to_have_count(0)  # no tile for a node that needs nothing

    first = host_region(dashboard, "sim-1")
    count = hosts["sim-1"]["nodes"]
    assert count > 0
    toggle = first.locator(".fold-toggle")
    expect(toggle).to_contain_text(re.compile(rf"✓\s*{count}\s*healthy"))
    expect(toggle).to_have_attribute("aria-label", re.compile(rf"sim-1, host up, {count} nodes: {count} healthy"))
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    dashboard.shot("folded")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(first.locator(".tile")).to_have_count(count)
    expect(first.locator('.tile[data-visual="healthy"]')).to_have_count(count)
    listed = api_status_of_host(farm, "sim-1")
    expect(first.locator(f'.tile[data-node="{listed[0]}"]')).to_contain_text("healthy")
    dashboard.shot("host-open")

    first.get_by_role("button", name="Close sim-1").click()
    expect(first.locator(".tile")).to_have_count(0)
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_be_focused()

    second = host_region(dashboard, "sim-2")  # the keyboard: Enter opens, Escape closes
    second.locator(".fold-toggle").focus()
    page.keyboard.press("Enter")
    expect(second.locator(".tile")).to_have_count(hosts["sim-2"]["nodes"])
    page.keyboard.press("Escape")
    expect(second.locator(".tile")).to_have_count(0)
    expect(second.locator(".fold-toggle")).to_be_focused()

    # Trouble: two nodes that never finish booting. Their host comes first, with their tiles.
    answer = farm.post("/api/roles/batch/scale", {"count": 2})
    assert answer.status_code == 200, answer.text
    slow = host_region(dashboard, "slow-1")
    expect(page.locator("#hosts .fold").first).to_have_attribute("data-key", "slow-1")
    expect(slow.locator('.tile[data-visual="starting"]')).to_have_count(2)
    expect(slow.locator(".fold-toggle")).to_contain_text(re.compile(r"◔\s*2\s*starting"))
    expect(page.locator("#map-summary")).to_contain_text("1 host needs a look")
    batch = wait_for(lambda: [n["id"] for n in api_status(farm)["nodes"] if n["role"] == "batch"] or None,
                     10, "the batch nodes listed")
    dashboard.tile(batch[0]).get_by_role("button").click()
    expect(page.locator("#node-panel .node-id")).to_have_text(batch[0])
    expect(page.locator("#node-panel .node-visual")).to_contain_text("starting")
    dashboard.shot("trouble-first")

    page.get_by_label("Find a host").fill("sim-19")
    found = [name for name in hosts if "sim-19" in name]  # sim-19 and sim-190..199
    expect(page.locator("#hosts .fold")).to_have_count(len(found))
    expect(page.locator("#map-summary")).to_contain_text(f"Showing {len(found)} of {HOSTS + 1} hosts")


def api_status_of_host(farm: Farm, host: str) -> list[str]:
    """The ids of every node on ``host``, through the same query the page makes."""
    url, _ = farm.api()
    answer = httpx.get(f"{url}/api/status", params={"host": host, "nodes": "all"}, timeout=10, trust_env=False).json()
    return [node["id"] for node in answer["nodes"]]
