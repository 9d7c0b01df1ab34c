"""Active health checks: one small task per node, results kept for the next tick.

Checks run from the controller, as a load balancer would see the node: ``http`` (GET the
path, expect the status), ``tcp`` (a connect) or ``exec`` (a command on the node's host, exit
0). A status change wakes the reconcile loop at once, so a failed node is replaced within a
check interval rather than a tick.

HTTP checks keep one connection per node open between checks (``http_probe``): at one check
per second per node they are most of what the controller does at rest, so each costs one
write and one read rather than a connect and a general HTTP client's machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from farmhand.controller.decide.health_state import CheckState, after_check
from farmhand.controller.http_probe import HttpProbe, ProbeError
from farmhand.drivers.base import Driver
from farmhand.records import Health
from farmhand.spec.models import HealthSpec

STARTING_RETRY = 0.2


@dataclass(frozen=True)
class CheckTarget:
    """What to check for one node; a new pid (a restart) is a new target."""

    node_id: str
    pid: int
    address: str
    port: int | None
    spec: HealthSpec
    started_at: float
    driver: Driver
    command: str | None = None
    """The exec check's command with placeholders filled."""


class HealthMonitor:
    def __init__(self, on_change: Callable[[], None], now: Callable[[], float]) -> None:
        self._on_change = on_change
        self._now = now
        self._tasks: dict[str, tuple[CheckTarget, asyncio.Task[None]]] = {}
        self._states: dict[str, CheckState] = {}

    def __repr__(self) -> str:
        return f"<HealthMonitor [checking: {len(self._tasks)}]>"

    def sync(self, targets: dict[str, CheckTarget]) -> None:
        """Check exactly these nodes from now on (start new checks, stop old ones)."""
        for node_id, (target, task) in list(self._tasks.items()):
            if targets.get(node_id) != target:
                task.cancel()
                del self._tasks[node_id]
                self._states.pop(node_id, None)
        for node_id, target in targets.items():
            if node_id not in self._tasks:
                self._states[node_id] = CheckState()
                self._tasks[node_id] = (target, asyncio.create_task(self._check_forever(target)))

    def state(self, node_id: str) -> CheckState:
        return self._states.get(node_id, CheckState())

    async def close(self) -> None:
        for _, task in self._tasks.values():
            task.cancel()
        for _, task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _check_forever(self, target: CheckTarget) -> None:
        spec = target.spec
        probe = HttpProbe(target.address, target.port or 0, spec.path) if spec.type == "http" else None
        try:
            await self._check_until_cancelled(target, probe)
        finally:
            if probe is not None:
                probe.close()

    async def _check_until_cancelled(self, target: CheckTarget, probe: HttpProbe | None) -> None:
        spec = target.spec
        while True:
            ok, detail = await self._check_once(target, probe)
            in_grace = self._now() - target.started_at < spec.start_grace
            before = self._states.get(target.node_id, CheckState())
            after = after_check(before, ok, detail, in_grace=in_grace, rise=spec.rise, fall=spec.fall)
            self._states[target.node_id] = after
            if after.status != before.status:
                self._on_change()
            # A node that has not answered yet is asked again soon: it is usually just
            # starting, and waiting a whole interval would delay its first traffic.
            starting = after.status == Health.UNKNOWN and in_grace
            await asyncio.sleep(min(spec.interval, STARTING_RETRY) if starting else spec.interval)

    async def _check_once(self, target: CheckTarget, probe: HttpProbe | None) -> tuple[bool, str]:
        spec = target.spec
        simulated = target.driver.simulated_health(target.node_id)
        if simulated is not None:
            return simulated  # a fake node: answered from memory, no socket
        try:
            async with asyncio.timeout(spec.timeout):
                if probe is not None:
                    status = await probe.status()
                    if status != spec.status:
                        return False, f"GET {spec.path} answered {status}, expected {spec.status}"
                    return True, ""
                if spec.type == "tcp":
                    _, writer = await asyncio.open_connection(target.address, target.port)
                    writer.close()
                    return True, ""
                result = await target.driver.exec(target.command or "", timeout=spec.timeout)
                if result.exit_code != 0:
                    output = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
                    return False, f"exec check exited {result.exit_code}" + (f": {output[-1]}" if output else "")
                return True, ""
        except TimeoutError:
            return False, f"no answer within {spec.timeout:g}s"
        except (OSError, ProbeError) as error:
            return False, _describe(error)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, ConnectionRefusedError) or "refused" in text.lower():
        return "connection refused"
    return text
