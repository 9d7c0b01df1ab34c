"""FastAPI routes over the user intents. Reads are open (the API listens on loopback by
default); every call that changes anything needs ``Authorization: Bearer <token>``.

The token, the ``Host`` check and the body limit are enforced by ``farmhand.api.guard`` in
front of every route, before any route reads a byte of the body. Request fields the intents
take as given (a node id that becomes a file name, a log offset that becomes a seek) are
checked here and refused with a 4xx that names the field."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from farmhand import intents
from farmhand.api import guard
from farmhand.api.dashboard import mount_dashboard
from farmhand.api.deploy import deploy_routes
from farmhand.errors import FarmhandError, RequestError, SpecError
from farmhand.spec.models import NAME_PATTERN

NODE_ID = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$") + r"-[0-9]{1,9}(?:\.[0-9]{1,9})?")
"""A node id: its role's name, ``-N``, and maybe a generation ``.N`` (``web-3``, ``web-3.2``)."""
MAX_OFFSET = 1 << 53
"""The largest log offset taken (far past any log; a seek takes it, JSON numbers stay exact)."""


class ScaleBody(BaseModel):
    count: int = Field(ge=0, description="How many nodes the role should have")


class MigrateBody(BaseModel):
    host: str = Field(description="The host the node moves to")


def node_id_field(node_id: str) -> str:
    """``node_id`` if it can be a node id, else a 400 naming the field (a NUL or a path in
    it would otherwise reach a file name)."""
    if not NODE_ID.fullmatch(node_id):  # fullmatch: `$` lets a newline through
        shown = node_id[:40].encode("unicode_escape").decode("ascii")
        raise RequestError(f"{shown!r} is not a node id (a role name, a dash and a number, like web-1)",
                           "node", 400)
    return node_id


def create_app(ctl: intents.Farm, token: str, *, api_hosts: Iterable[str] = (),
               max_body: int = guard.MAX_BODY) -> FastAPI:
    """The API of ``ctl``. ``api_hosts`` are names besides the API's own address and
    localhost that clients may use in ``Host`` (a reverse proxy's name, say)."""
    app = FastAPI(title="farmhand", version="1", summary=f"controller of farm {intents.farm_name(ctl)}")
    app.add_middleware(guard.Guard, token=token, hosts=tuple(api_hosts), max_body=max_body)

    @app.exception_handler(FarmhandError)
    async def farmhand_error(_: Request, error: FarmhandError) -> JSONResponse:
        if isinstance(error, SpecError):
            return JSONResponse({"error": str(error), "problems": [str(p) for p in error.problems]}, status_code=422)
        status = error.status if isinstance(error, RequestError) else 500
        field = error.field if isinstance(error, RequestError) else None
        return JSONResponse({"error": str(error), "field": field}, status_code=status)

    @app.exception_handler(guard.BodyTooLarge)
    async def body_too_large(_: Request, error: guard.BodyTooLarge) -> JSONResponse:
        refusal = guard.body_too_large(error.limit)
        return JSONResponse({"error": refusal.message, "field": refusal.field}, status_code=refusal.status,
                            headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422, with the API's usual ``error`` and ``field`` beside its detail."""
        problems = list(error.errors())
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ())[1:]]
        field = ".".join(location) or "request"
        return JSONResponse({"error": f"{field}: {first.get('msg', 'invalid')}", "field": field,
                             "detail": json.loads(json.dumps(problems, default=str))}, status_code=422)

    @app.get("/api/status")
    async def get_status(nodes: str = "auto", host: str | None = None, role: str | None = None) -> dict[str, Any]:
        intents.watched(ctl)
        return await intents.status(ctl, nodes, host, role)

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
    async def node_log(node_id: str, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                       follow: bool = False) -> Response:
        node_id_field(node_id)
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
                elif await intents.until_stopped(ctl, 0.25):
                    return  # the farm stopped: the stream ends (the CLI says so)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/api/roles/{role}/scale")
    async def scale(role: str, body: ScaleBody) -> dict[str, Any]:
        return intents.scale(ctl, role, body.count)

    @app.post("/api/nodes/{node_id}/stop")
    async def stop(node_id: str) -> dict[str, Any]:
        return intents.stop_node(ctl, node_id)

    @app.post("/api/nodes/{node_id}/replace")
    async def replace(node_id: str) -> dict[str, Any]:
        return intents.replace_node(ctl, node_id)

    @app.post("/api/nodes/{node_id}/migrate")
    async def migrate(node_id: str, body: MigrateBody) -> dict[str, Any]:
        return intents.migrate(ctl, node_id, body.host)

    @app.get("/api/hosts")
    async def hosts() -> list[dict[str, Any]]:
        return await intents.hosts(ctl)

    @app.post("/api/hosts/{host}/drain")
    async def drain_host(host: str) -> dict[str, Any]:
        return intents.drain_host(ctl, host)

    @app.post("/api/hosts/{host}/undrain")
    async def undrain_host(host: str) -> dict[str, Any]:
        return intents.undrain_host(ctl, host)

    @app.post("/api/reload")
    async def reload() -> dict[str, Any]:
        return await intents.reload(ctl)

    @app.post("/api/down")
    async def down() -> dict[str, Any]:
        return intents.down(ctl)

    _fleet_routes(app, ctl)
    deploy_routes(app, ctl)
    mount_dashboard(app, ctl)
    return app


class FleetExecBody(BaseModel):
    target: str = Field(min_length=1, max_length=4096, description="Hosts, @group, @role or a node set")
    command: str = Field(min_length=1, max_length=131072, description="A /bin/sh command line")
    timeout: float = Field(default=3600.0, gt=0, description="Seconds before a host's command is killed")
    fanout: int = Field(default=64, ge=1, description="Most hosts at work at once")


def _fleet_routes(app: FastAPI, ctl: intents.Farm) -> None:
    """Fleet work (issue 13): a command to many hosts over the drivers' open connections."""

    @app.post("/api/fleet/exec")
    async def fleet_exec(body: FleetExecBody) -> dict[str, Any]:
        return await intents.fleet_exec(ctl, body.target, body.command, body.timeout, body.fanout)

    @app.get("/api/fleet/nodeset")
    async def fleet_nodeset(target: str) -> dict[str, Any]:
        return intents.fleet_nodeset(ctl, target)
