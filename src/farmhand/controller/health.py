"""Active health checks: one small task per real node, one timer for all simulated ones,
results kept for the next tick.

Checks run from the controller, as a load balancer would see the node: ``http`` (GET the
path, expect the status), ``tcp`` (a connect) or ``exec`` (a command on the node's host, exit
0). A status change wakes the reconcile loop at once, so a failed node is replaced within a
check interval rather than a tick.

HTTP checks keep one connection per node open between checks (``http_probe``): at one check
per second per node they are most of what the controller does at rest, so each costs one
write and one read rather than a connect and a general HTTP client's machinery.

Nodes of a simulated driver (``Driver.simulated``: the fake one) are answered from memory, so
a task each would cost more than the check itself (10,000 nodes, 10,000 wake-ups a second):
they share one timer (``_run_due``) over a heap of due times, which checks every node whose
turn has come, at most every ``WHEEL_STEP`` seconds. Each keeps its own pace (its interval
after its last check) as with a task.

What a check leaves behind is kept small at rest: a result that moves nothing (a healthy node
passing again) only counts the check; the state is replaced only when it changes, so a farm at
rest makes no garbage that outlives a collection, and ``changed()`` tells the tick which
nodes' health moved since it last asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from farmhand.controller.decide.health_state import CheckState, after_check
from farmhand.controller.http_probe import HttpProbe, ProbeError
from farmhand.drivers.base import Driver
from farmhand.records import Health
from farmhand.spec.models import HealthSpec

STARTING_RETRY = 0.2
FRESH = CheckState()
SHARED_STATES = 1000
WHEEL_STEP = 0.02
"""Simulated checks that fall due within this many seconds run together (one wake-up)."""


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
        self._targets: dict[str, CheckTarget] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """The checking task of each real node (simulated nodes have none)."""
        self._states: dict[str, CheckState] = {}
        self._counts: dict[str, int] = {}
        """Checks run per node (kept apart from the state, which a passing check leaves as is)."""
        self._due: list[tuple[float, int, str, CheckTarget]] = []
        """Simulated checks by due time (loop time); an entry whose target was replaced is stale."""
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._changed: set[str] = set()
        self._shared: dict[CheckState, CheckState] = {}
        """One object per distinct state (kept without its check count), so 10,000 healthy
        nodes hold a handful of states rather than 10,000 that the collector walks."""

    def __repr__(self) -> str:
        return f"<HealthMonitor [checking: {len(self._targets)} | tasks: {len(self._tasks)}]>"

    def sync(self, targets: dict[str, CheckTarget]) -> None:
        """Check exactly these nodes from now on (start new checks, stop old ones)."""
        gone = {node_id: None for node_id, target in self._targets.items() if targets.get(node_id) != target}
        fresh = {node_id: target for node_id, target in targets.items() if self._targets.get(node_id) != target}
        self.update({**gone, **fresh})

    def update(self, changes: dict[str, CheckTarget | None]) -> None:
        """Change only these nodes' checks: a target (new or changed: checked afresh) or None
        (no longer checked). What a tick calls when a few nodes changed among many."""
        loop: asyncio.AbstractEventLoop | None = None
        for node_id, target in changes.items():
            current = self._targets.get(node_id)
            if current is not None and current == target:
                continue
            if current is not None:
                del self._targets[node_id]
                task = self._tasks.pop(node_id, None)
                if task is not None:
                    task.cancel()
                self._states.pop(node_id, None)
                self._counts.pop(node_id, None)
                self._changed.add(node_id)
            if target is None:
                continue
            self._targets[node_id] = target
            self._states[node_id] = FRESH
            self._counts[node_id] = 0
            self._changed.add(node_id)
            if target.driver.simulated:
                loop = loop or asyncio.get_running_loop()
                heapq.heappush(self._due, (loop.time(), next(self._order), node_id, target))
            else:
                self._tasks[node_id] = asyncio.create_task(self._check_forever(target))
        if loop is not None and self._due:
            self._arm(loop, self._due[0][0])

    def state(self, node_id: str) -> CheckState:
        state = self._states.get(node_id)
        if state is None:
            return CheckState()
        count = self._counts.get(node_id, 0)
        return state if state.checks == count else dataclasses.replace(state, checks=count)

    def status(self, node_id: str) -> CheckState:
        """The node's state without its check count (no copy: what a tick reads per node)."""
        return self._states.get(node_id) or CheckState()

    def changed(self) -> set[str]:
        """Nodes whose health (status or detail) moved, or whose checks began or ended, since
        the last call."""
        changed, self._changed = self._changed, set()
        return changed

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._targets.clear()

    def _record(self, target: CheckTarget, ok: bool, detail: str) -> Health:
        """Take one check's result in; returns the node's status after it (waking the loop
        when it changed)."""
        spec = target.spec
        node_id = target.node_id
        in_grace = self._now() - target.started_at < spec.start_grace
        before = self._states.get(node_id) or CheckState()
        self._counts[node_id] = self._counts.get(node_id, 0) + 1
        if ok and before.status == Health.HEALTHY and not before.failures and not before.detail:
            return before.status  # healthy and passing again: nothing moves (passes is past rise)
        after = after_check(before, ok, detail, in_grace=in_grace, rise=spec.rise, fall=spec.fall)
        if after.detail != before.detail or after.status != before.status:
            self._changed.add(node_id)
        after = dataclasses.replace(after, checks=0)  # counted apart (``state`` puts it back)
        if len(self._shared) > SHARED_STATES:
            self._shared.clear()  # details vary without bound (a changing error text): start afresh
        self._states[node_id] = self._shared.setdefault(after, after)
        if after.status != before.status:
            self._on_change()
        return after.status

    def _next_in(self, target: CheckTarget, status: Health) -> float:
        # A node that has not answered yet is asked again soon: it is usually just
        # starting, and waiting a whole interval would delay its first traffic.
        spec = target.spec
        starting = status == Health.UNKNOWN and self._now() - target.started_at < spec.start_grace
        return min(spec.interval, STARTING_RETRY) if starting else spec.interval

    # simulated nodes: one timer ------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._run_due)

    def _run_due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._due
        try:
            while due and due[0][0] <= now:
                _, _, node_id, target = heapq.heappop(due)
                if self._targets.get(node_id) is not target:
                    continue  # replaced or no longer checked
                answer = target.driver.simulated_health(node_id)
                ok, detail = answer if answer is not None else (False, "the driver does not simulate this node")
                status = self._record(target, ok, detail)
                heapq.heappush(due, (now + self._next_in(target, status), next(self._order), node_id, target))
        finally:  # whatever went wrong with one node, the others go on being checked
            if due:
                self._arm(loop, max(due[0][0], now + WHEEL_STEP))

    # real nodes: a task each ----------------------------------------------------------------

    async def _check_forever(self, target: CheckTarget) -> None:
        spec = target.spec
        probe = HttpProbe(target.address, target.port or 0, spec.path) if spec.type == "http" else None
        try:
            while True:
                ok, detail = await self._check_once(target, probe)
                status = self._record(target, ok, detail)
                await asyncio.sleep(self._next_in(target, status))
        finally:
            if probe is not None:
                probe.close()

    async def _check_once(self, target: CheckTarget, probe: HttpProbe | None) -> tuple[bool, str]:
        spec = target.spec
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
