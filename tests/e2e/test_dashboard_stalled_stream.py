"""The dashboard does not stay "connecting…" for ever when its first requests go wrong.

- A status stream whose answer never starts: the page gives up on it and opens it again
  (web/stream.js). EventSource retries only after an error; a connection that stalls before
  its response head raises none.
- A module that cannot be fetched (Chromium cancels requests in flight when the machine's
  addresses change, which test hosts being made elsewhere do): the page reloads itself
  (web/boot.js), since a failed module graph runs no code at all.

The stand-in server here serves the dashboard's real files and a scripted API on loopback:
it holds the first status stream open without a word, and (when asked) drops the first
request for one module without an answer.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Dashboard

WEB = Path(__file__).resolve().parents[2] / "src" / "farmhand" / "web"
STATUS = {"farm": "stalled", "time": 1_000_000.0, "shutting_down": False, "nodes_total": 0, "nodes_listed": 0,
          "nodes_complete": True, "roles": [], "nodes": [], "hosts": []}


class ScriptedApi(SimpleHTTPRequestHandler):
    """The page's files, and an API whose first status stream stalls."""

    calls: dict[str, int]
    release: threading.Event
    drop_first: str = ""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        if path == self.drop_first:
            self.calls[path] = self.calls.get(path, 0) + 1
            if self.calls[path] == 1:
                self.close_connection = True  # no answer at all: the browser's fetch fails
                return
        if not path.startswith("/api/"):
            self.path = self.path.removeprefix("/web")  # the page asks for /web/app.js, as the API serves it
            super().do_GET()
            return
        self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/api/status/stream" and self.calls[path] == 1:
            self.release.wait(60)  # no answer at all, as a stalled connection
            return
        if path.endswith("/stream"):
            self._stream(path)
        else:
            self._json({"samples": []} if path == "/api/history" else [])

    def _json(self, answer: Any) -> None:
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, path: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if path == "/api/status/stream":
            self.wfile.write(f"event: status\ndata: {json.dumps(STATUS)}\n\n".encode())
        self.wfile.flush()
        self.release.wait(60)


@pytest.fixture
def scripted_api(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, int]]]:
    calls: dict[str, int] = {}
    release = threading.Event()
    drop = getattr(request, "param", "")
    handler = type("Handler", (ScriptedApi,), {"calls": calls, "release": release, "drop_first": drop})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(WEB)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_status_stream_that_never_answers_is_opened_again(scripted_api: tuple[str, dict[str, int]],
                                                             dashboard: Dashboard) -> None:
    url, calls = scripted_api
    dashboard.page.goto(f"{url}/index.html")
    expect(dashboard.page.locator("#connection")).to_have_attribute("data-state", "live")
    assert calls["/api/status/stream"] >= 2, calls
    expect(dashboard.page.locator("#farm-name, h1").first).to_contain_text("stalled")


@pytest.mark.parametrize("scripted_api", ["/web/map.js"], indirect=True)
def test_a_module_that_failed_to_load_reloads_the_page(scripted_api: tuple[str, dict[str, int]],
                                                         dashboard: Dashboard) -> None:
    url, calls = scripted_api
    dashboard.page.goto(f"{url}/index.html")
    expect(dashboard.page.locator("#connection")).to_have_attribute("data-state", "live")
    assert calls["/web/map.js"] >= 2, calls
