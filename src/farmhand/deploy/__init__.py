"""`farmhand deploy ROLE`: a role's release to its hosts, then its nodes moved onto it one at a
time through the load balancer, or everything rolled back (issue 13).

Sits at the level of ``farmhand.intents`` (pyproject's layers): the faces call it, it reads
the controller's public surface and calls its commands (``mark``, ``note``), and it uses
``farmhand.fleet`` for the sync. ``plan`` holds the pure decisions, ``run`` the workflow.

``Deploys`` is what the API holds: at most one deploy per role at a time, each running in
the background (a deploy outlives the request that started it, and the CLI follows it), the
last one of each role kept for reading.
"""

from __future__ import annotations

import asyncio
from typing import Any

from farmhand.controller.loop import Controller
from farmhand.errors import RequestError

__all__ = ["Deploys"]


class Deploys:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._runs: dict[str, Any] = {}
        """Role -> its last ``Deployer``."""
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def __repr__(self) -> str:
        running = sorted(role for role, task in self._tasks.items() if not task.done())
        return f"<Deploys [running: {', '.join(running) or 'none'}]>"

    def _check(self, role_name: str) -> None:
        role = self.ctl.spec.roles.get(role_name)
        if role is None:
            known = ", ".join(self.ctl.spec.roles) or "none"
            raise RequestError(f"no role {role_name!r} in farm {self.ctl.spec.name} (roles: {known})", "role", 404)
        if role.deploy is None:
            raise RequestError(f"role {role_name} has no [roles.{role_name}.deploy] table (source, dest): "
                               "add one to the farm file and `farmhand reload`", "role", 409)
        if self.ctl.shutting_down:
            raise RequestError(f"farm {self.ctl.spec.name} is stopping", "role", 409)

    def start(self, role_name: str) -> dict[str, Any]:
        """Start a deploy of ``role_name`` in the background; its report as it starts."""
        from farmhand.deploy.run import Deployer

        self._check(role_name)
        task = self._tasks.get(role_name)
        if task is not None and not task.done():
            raise RequestError(f"role {role_name} is being deployed already (`farmhand deploy {role_name}` "
                               "follows it)", "role", 409)
        deployer = Deployer(self.ctl, role_name)
        self._runs[role_name] = deployer
        self._tasks[role_name] = asyncio.ensure_future(deployer.run())
        return deployer.report.to_json()

    async def dry_run(self, role_name: str) -> dict[str, Any]:
        from farmhand.deploy.run import dry_run

        self._check(role_name)
        return await dry_run(self.ctl, role_name)

    def report(self, role_name: str) -> dict[str, Any]:
        """The last deploy of ``role_name``, running or ended."""
        if role_name not in self.ctl.spec.roles:
            self._check(role_name)
        deployer = self._runs.get(role_name)
        if deployer is None:
            raise RequestError(f"role {role_name} has not been deployed since the controller started", "role", 404)
        report: dict[str, Any] = deployer.report.to_json()
        return report
