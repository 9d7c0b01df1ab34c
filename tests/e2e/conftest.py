"""Browser fixtures for the dashboard's end-to-end tests.

Debian's chromium (``/usr/bin/chromium``, installed by ``scripts/bootstrap`` when run as
root) is driven by Playwright; Playwright's own browser download is never used. The browser
gets a fresh profile, and both the browser and the farm are gone after
the test even when it failed (the farm through ``make_farm``). A failing test also leaves a
screenshot of the page as it was, beside the ones the tests take on purpose.

One browser serves a whole module (starting chromium costs seconds on a small machine);
each test gets its own page, so no token or state leaks from one test to the next.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright

from tests.integration.conftest import make_farm  # noqa: F401 - the farm fixture, shared
from tests.integration.farmkit import REPO, Farm

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
TIMEOUT_MS = 15_000
"""Longest wait for one condition on the page (a deadline, not an expected duration)."""
expect.set_options(timeout=TIMEOUT_MS)


class Dashboard:
    """A browser page pointed at one farm's dashboard, with screenshots named per test."""

    def __init__(self, page: Page, test_name: str) -> None:
        self.page = page
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)

    def open(self, farm: Farm, token: str | None = "real") -> None:
        """Open the dashboard as `farmhand up` prints it: the token in the URL fragment."""
        url, real_token = farm.api()
        given = real_token if token == "real" else token
        self.page.goto(f"{url}/#token={given}" if given else f"{url}/")

    def tile(self, node_id: str) -> Locator:
        return self.page.locator(f'.tile[data-node="{node_id}"]')

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.test_name}--{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless chromium per test module, with a fresh profile (tests get fresh pages,
    whose sessionStorage, where the token lives, starts empty)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap as root (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1360, "height": 900},
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            yield context
        finally:
            context.close()


@pytest.fixture
def dashboard(request: pytest.FixtureRequest, browser: BrowserContext) -> Iterator[Dashboard]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    trail: list[str] = []  # what the page said and asked, printed when the test fails
    page.on("console", lambda message: trail.append(f"console {message.type}: {message.text}"))
    page.on("requestfailed", lambda req: trail.append(f"failed {req.method} {req.url}: {req.failure}"))
    page.on("response", lambda response: trail.append(f"{response.status} {response.request.method} {response.url}"))
    board = Dashboard(page, request.node.name)
    try:
        yield board
        call = getattr(request.node, "report_call", None)
        if call is not None and call.failed:
            board.shot("failed")
            print("the page's trail:", *trail[-60:], sep="\n  ")
        assert not errors, f"the page threw: {errors}"
    finally:
        page.close()


def api_status(farm: Farm) -> dict[str, Any]:
    """The farm's status straight from its API (faster than a `farmhand status` process)."""
    url, _ = farm.api()
    answer: dict[str, Any] = httpx.get(f"{url}/api/status", timeout=10, trust_env=False).json()
    return answer


def api_events(farm: Farm) -> list[dict[str, Any]]:
    url, _ = farm.api()
    answer: list[dict[str, Any]] = httpx.get(f"{url}/api/events?limit=10000", timeout=10, trust_env=False).json()
    return answer


FarmMaker = Callable[..., Farm]
