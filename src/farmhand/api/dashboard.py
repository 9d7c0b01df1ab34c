"""The dashboard's routes: the page, its static files, live streams, history and /metrics.

``mount_dashboard(app, ctl)`` adds them to the API app so ``create_app`` stays a list of
intent routes. Everything here only reads the farm; the page changes it through the same
token-guarded routes the CLI uses.

Routes:

- ``GET /`` the page; ``GET /web/...`` its scripts and styles (``farmhand/web``, no build
  step). Served with ``no-cache`` so an upgraded farmhand never runs yesterday's script.
- ``GET /api/status/stream`` server-sent events: ``status`` (the ``/api/status`` JSON; above
  ``live.FOLD_AT`` nodes the folded view, ``nodes=summary``) at once, then ``patch`` (only
  the host and node rows that changed, see ``live.status_patch``) on every change, at most
  every 250 ms and slower when a status is costly; ``sample`` for each history point. The
  page opens a folded host with ``GET /api/status?host=NAME&nodes=all``.
- ``GET /api/history`` the last 15 minutes of nodes per role and requests/s.
- ``GET /metrics`` Prometheus text (see ``farmhand.api.metrics``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.staticfiles import StaticFiles

from farmhand import intents
from farmhand.api import live, metrics

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Only our own files run; the token never leaves for another origin.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}


class _WebFiles(StaticFiles):
    """Static files that the browser revalidates every time (they are tiny, on loopback)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_dashboard(app: FastAPI, ctl: intents.Farm) -> None:
    """Add the dashboard's routes to ``app``; history sampling starts now if a loop runs
    (``farmhand up``), else with the first dashboard request."""
    farm = live.LiveFarm(ctl)
    scale_events = metrics.EventCounter(ctl, metrics.SCALE_KINDS)
    try:
        asyncio.get_running_loop()
        farm.start()
    except RuntimeError:
        pass

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        farm.start()
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/web", _WebFiles(directory=WEB_DIR), name="web")

    @app.get("/api/status/stream", response_class=StreamingResponse,
             summary="The status JSON as server-sent events, pushed when it changes")
    async def status_stream() -> StreamingResponse:
        return StreamingResponse(farm.frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/history", summary="Nodes per role and requests/s over the last 15 minutes")
    async def history() -> dict[str, Any]:
        farm.start()
        return {"interval": live.SAMPLE_INTERVAL, "window": live.HISTORY_SECONDS, "samples": list(farm.history)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        snapshot = await metrics.take_snapshot(ctl, scale_events)
        return Response(metrics.render(snapshot), media_type=CONTENT_TYPE_LATEST)
