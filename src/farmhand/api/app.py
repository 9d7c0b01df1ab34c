"""FastAPI routes over the user intents. Reads are open (the API listens on loopback by
default); every call that changes anything needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from farmhand import intents
from farmhand.api.dashboard import mount_dashboard
from farmhand.controller.loop import Controller
from farmhand.errors import FarmhandError, RequestError, SpecError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class ScaleBody(BaseModel):
    count: int = Field(ge=0, description="How many nodes the role should have")


class MigrateBody(BaseModel):
    host: str = Field(description="The host the node moves to")


def create_app(ctl: Controller, token: str) -> FastAPI:
    app = FastAPI(title="farmhand", version="1", summary=f"controller of farm {ctl.spec.name}")

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given:
            raise RequestError("this call changes the farm and needs the token "
                               "(Authorization: Bearer <token from .farmhand/token>)", "authorization", 401)
        if not secrets.compare_digest(given, token):
            raise RequestError("wrong token (see .farmhand/token)", "authorization", 403)

    changes = [Depends(require_token)]

    @app.exception_handler(FarmhandError)
    async def farmhand_error(_: Request, error: FarmhandError) -> JSONResponse:
        if isinstance(error, SpecError):
            return JSONResponse({"error": str(error), "problems": [str(p) for p in error.problems]}, status_code=422)
        status = error.status if isinstance(error, RequestError) else 500
        field = error.field if isinstance(error, RequestError) else None
        return JSONResponse({"error": str(error), "field": field}, status_code=status)

    @app.get("/api/status")
    async def get_status() -> dict[str, Any]:
        return await intents.status(ctl)

    @app.get("/api/events")
    async def get_events(after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        return intents.events(ctl, after, limit)

    @app.get("/api/events/stream", response_class=StreamingResponse)
    async def stream_events(after: int = 0) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            yield ": connected\n\n"
            async for event in intents.follow_events(ctl, after):
                yield f"id: {event.seq}\nevent: farm\ndata: {json.dumps(event.to_json())}\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/nodes/{node_id}/log", response_class=StreamingResponse)
    async def node_log(node_id: str, offset: int = 0, follow: bool = False) -> Response:
        if not follow:
            return Response(await intents.read_log(ctl, node_id, offset), media_type="text/plain")
        first = await intents.read_log(ctl, node_id, offset)

        async def chunks() -> AsyncIterator[bytes]:
            position = offset + len(first)
            yield first
            while True:
                data = await intents.read_log(ctl, node_id, position)
                if data:
                    position += len(data)
                    yield data
                else:
                    await asyncio.sleep(0.25)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/api/roles/{role}/scale", dependencies=changes)
    async def scale(role: str, body: ScaleBody) -> dict[str, Any]:
        return intents.scale(ctl, role, body.count)

    @app.post("/api/nodes/{node_id}/stop", dependencies=changes)
    async def stop(node_id: str) -> dict[str, Any]:
        return intents.stop_node(ctl, node_id)

    @app.post("/api/nodes/{node_id}/replace", dependencies=changes)
    async def replace(node_id: str) -> dict[str, Any]:
        return intents.replace_node(ctl, node_id)

    @app.post("/api/nodes/{node_id}/migrate", dependencies=changes)
    async def migrate(node_id: str, body: MigrateBody) -> dict[str, Any]:
        return intents.migrate(ctl, node_id, body.host)

    @app.get("/api/hosts")
    async def hosts() -> list[dict[str, Any]]:
        return await intents.hosts(ctl)

    @app.post("/api/hosts/{host}/drain", dependencies=changes)
    async def drain_host(host: str) -> dict[str, Any]:
        return intents.drain_host(ctl, host)

    @app.post("/api/hosts/{host}/undrain", dependencies=changes)
    async def undrain_host(host: str) -> dict[str, Any]:
        return intents.undrain_host(ctl, host)

    @app.post("/api/reload", dependencies=changes)
    async def reload() -> dict[str, Any]:
        return await intents.reload(ctl)

    @app.post("/api/down", dependencies=changes)
    async def down() -> dict[str, Any]:
        return intents.down(ctl)

    mount_dashboard(app, ctl)
    return app
