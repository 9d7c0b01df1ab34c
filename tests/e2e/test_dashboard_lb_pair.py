"""The roles table shows a load-balancer pair: which member holds the floating address and how
the others stand (issue 14).

A pair needs keepalived on SSH test hosts (tests/integration/hosts/test_lb_pair.py runs one
and checks the status JSON this view reads); here the dashboard's own roles module renders
status rows of that shape in real Chromium, served from the package's web folder on loopback,
so the view is checked without a second pair of hosts.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Dashboard

WEB = Path(__file__).resolve().parents[2] / "src" / "farmhand" / "web"
PAGE = '<link rel="stylesheet" href="/style.css"><table class="roles"><tbody id="roles"></tbody></table>'
RENDER = """async (status) => {
  const { renderRoles } = await import("/roles.js");
  renderRoles(document.querySelector("#roles"), status, () => {});
}"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web_folder() -> Iterator[str]:
    """The dashboard's files over HTTP on loopback (ES modules do not load from file://)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def status(pair: dict[str, Any] | None) -> dict[str, Any]:
    role = {"name": "web", "wanted": 2, "running": 2, "healthy": 2, "min": 2, "max": 2, "lb": "10.213.0.100:80",
            "lb_mode": "http", "lb_state": "listening", "lb_stats": {"engine": "builtin"}, "lb_pair": pair,
            "failures": 0}
    return {"farm": "demo", "time": 1_000_000.0, "roles": [role], "nodes": [], "hosts": []}


def members(**states: tuple[str, str, bool]) -> dict[str, Any]:
    return {name: {"state": state, "balancer": balancer, "reachable": reachable, "since": 999_990.0}
            for name, (state, balancer, reachable) in states.items()}


def test_the_roles_table_shows_who_holds_a_pairs_address_and_follows_a_move(web_folder: str, dashboard: Dashboard) -> None:
    page = dashboard.page
    page.goto(f"{web_folder}/no-such-page")  # a page of that origin; its content is replaced
    page.set_content(PAGE)
    pair = page.locator('tr[data-role="web"] .pair')

    page.evaluate(RENDER, status({"vip": "10.213.0.100", "holder": "lb1",
                                  "members": members(lb1=("MASTER", "running", True), lb2=("BACKUP", "running", True))}))
    expect(pair).to_be_visible()
    expect(pair.locator(".pair-vip")).to_have_text("address 10.213.0.100 on lb1")
    expect(pair.locator('li[data-member="lb1"]')).to_have_text("lb1 · holds the address")
    expect(pair.locator('li[data-member="lb2"]')).to_have_text("lb2 · backup")
    expect(pair.locator('li[data-member="lb2"]')).to_have_attribute("data-state", "standby")
    dashboard.shot("held")

    # lb1's balancer died: the address moved to lb2, and lb1 shows what is wrong with it
    page.evaluate(RENDER, status({"vip": "10.213.0.100", "holder": "lb2",
                                  "members": members(lb1=("FAULT", "down", True), lb2=("MASTER", "running", True))}))
    expect(pair.locator(".pair-vip")).to_have_text("address 10.213.0.100 on lb2")
    expect(pair.locator('li[data-member="lb1"]')).to_have_text("lb1 · fault · balancer down")
    expect(pair.locator('li[data-member="lb1"]')).to_have_attribute("data-state", "bad")
    expect(pair).to_have_attribute("data-tone", "ok")
    dashboard.shot("moved")

    # no member holds it: the address answers nowhere, which the block says in its tone
    page.evaluate(RENDER, status({"vip": "10.213.0.100", "holder": None,
                                  "members": members(lb1=("unknown", "unknown", False), lb2=("FAULT", "down", True))}))
    expect(pair.locator(".pair-vip")).to_have_text("address 10.213.0.100: held by no member")
    expect(pair).to_have_attribute("data-tone", "bad")
    expect(pair.locator('li[data-member="lb1"]')).to_have_text("lb1 · unknown · balancer unknown · out of reach")


def test_a_role_with_one_balancer_shows_no_pair(web_folder: str, dashboard: Dashboard) -> None:
    page = dashboard.page
    page.goto(f"{web_folder}/no-such-page")  # a page of that origin; its content is replaced
    page.set_content(PAGE)
    page.evaluate(RENDER, status(None))
    expect(page.locator('tr[data-role="web"] .lb-text')).to_contain_text("10.213.0.100:80")
    expect(page.locator('tr[data-role="web"] .pair')).to_be_hidden()
