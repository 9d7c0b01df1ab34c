"""The dashboard on a phone-wide screen (issue 11.18): at 420 px nothing runs off the side,
the roles table reflows into one card per role with every column's name beside its value,
the scale buttons can be reached, and a role with a fixed count says so ("fixed 2", not the
"0–∞" its scale bounds would give)."""

from __future__ import annotations

import textwrap

import pytest
from playwright.sync_api import ViewportSize, expect

from tests.e2e.conftest import Dashboard, FarmMaker, api_status

pytestmark = pytest.mark.slow

PHONE: ViewportSize = {"width": 420, "height": 900}
FARM = textwrap.dedent("""\
    [farm]
    name = "phone"

    [roles.web]
    command = "python3 app.py --port {port} --node {node}"
    min = 1
    max = 4
    stop_grace = "2s"

    [roles.worker]
    command = "python3 app.py --port {port} --node {node}"
    count = 2
    stop_grace = "2s"
    """)

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const panel = document.querySelector('.roles-panel').getBoundingClientRect();
  const outside = [...document.querySelectorAll('.roles-panel *')]
    .filter((e) => { const box = e.getBoundingClientRect(); return box.width && (box.left < panel.left - 1 || box.right > panel.right + 1); })
    .map((e) => e.tagName + '.' + e.className);
  return { page: document.documentElement.scrollWidth - width, outside };
}"""


def test_the_roles_fit_a_phone_and_a_fixed_count_is_shown(make_farm: FarmMaker, dashboard: Dashboard) -> None:
    farm = make_farm(FARM)
    farm.up()
    page = dashboard.page
    page.set_viewport_size(PHONE)
    dashboard.open(farm)

    web, worker = page.locator('tr[data-role="web"]'), page.locator('tr[data-role="worker"]')
    expect(worker.locator(".counts")).to_have_text("2 · 2 · 2")
    expect(worker.locator(".bounds")).to_have_text("fixed 2")
    expect(web.locator(".bounds")).to_have_text("1–4")
    layout = page.evaluate(OVERFLOW)
    assert layout["page"] <= 0, f"the page is {layout['page']} px wider than a 420 px screen"
    assert not layout["outside"], f"cut off at 420 px: {layout['outside']}"
    assert worker.locator(".bounds").evaluate("e => getComputedStyle(e, '::before').content") == '"Min–max"'
    up = page.get_by_role("button", name="Scale web up to 2")
    expect(up).to_be_in_viewport()
    dashboard.shot("phone-roles")

    up.click()
    expect(web.locator(".counts")).to_have_text("2 · 2 · 2")
    assert api_status(farm)["roles"][0]["wanted"] == 2
