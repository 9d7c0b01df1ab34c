"""Deploy routes (issue 13): start a role's deploy in the background, read how it goes.

``POST /api/roles/{role}/deploy`` answers at once with the deploy's report (or, with
``dry_run``, with what it would do); ``GET`` the same path reads the last deploy of the role
until its ``status`` is set. Its steps are ``deploy.*`` events as well."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from farmhand import intents
from farmhand.deploy import Deploys


class DeployBody(BaseModel):
    dry_run: bool = Field(default=False, description="Show what would change, change nothing")


def deploy_routes(app: FastAPI, ctl: intents.Farm) -> Deploys:
    deploys = Deploys(ctl)

    @app.post("/api/roles/{role}/deploy")
    async def start_deploy(role: str, body: DeployBody) -> dict[str, Any]:
        if body.dry_run:
            return await deploys.dry_run(role)
        return deploys.start(role)

    @app.get("/api/roles/{role}/deploy")
    async def read_deploy(role: str) -> dict[str, Any]:
        return deploys.report(role)

    return deploys
