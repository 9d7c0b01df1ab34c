"""Live views of a farm for the dashboard: the status stream and 15 minutes of history.

Why one hub per API: every open dashboard wants the status JSON within a second of a change,
and computing it asks each load balancer for its counters. So one task computes it for all
listeners, at most every ``STATUS_INTERVAL`` and only while someone listens, and pushes it
only when it changed (the clock fields, which change on every call, are not a change).

Why a ring in memory: the charts need nodes per role and requests/s for the last 15
minutes. A sample every ``SAMPLE_INTERVAL`` is a few hundred small dicts, not worth a table
in the store; a restarted controller simply starts a new ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from farmhand import intents
from farmhand.records import NodeState

log = logging.getLogger(__name__)

STATUS_INTERVAL = 0.25
SAMPLE_INTERVAL = 2.0
HISTORY_SECONDS = 15 * 60
KEEPALIVE = 15.0
CLOCK_FIELDS = ("time",)
NODE_CLOCK_FIELDS = ("uptime",)


def status_signature(status: dict[str, Any]) -> str:
    """The status without the fields that move with the clock alone, as comparable text."""
    steady = {k: v for k, v in status.items() if k not in CLOCK_FIELDS}
    steady["nodes"] = [{k: v for k, v in node.items() if k not in NODE_CLOCK_FIELDS}
                       for node in status.get("nodes", [])]
    return json.dumps(steady, sort_keys=True, default=str)


def role_request_rate(role: dict[str, Any]) -> float | None:
    """The one requests/s figure the dashboard shows for a role (table, chart and legend):
    the status row's ``requests_per_s``, where ``intents.request_rate`` put it by one rule."""
    value = role.get("requests_per_s")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def sample_from(status: dict[str, Any]) -> dict[str, Any]:
    """One history point from a status: nodes and healthy nodes per role (draining and
    stopping ones no longer count), and requests/s per role (``role_request_rate``)."""
    roles = [role["name"] for role in status.get("roles", [])]
    nodes = dict.fromkeys(roles, 0)
    healthy = dict.fromkeys(roles, 0)
    for node in status.get("nodes", []):
        if node.get("state") in (NodeState.DRAINING, NodeState.STOPPING):
            continue
        role = node.get("role", "")
        nodes[role] = nodes.get(role, 0) + 1
        if node.get("state") == NodeState.RUNNING:
            healthy[role] = healthy.get(role, 0) + 1
    rps = {role["name"]: role_request_rate(role) for role in status.get("roles", [])}
    return {"t": round(float(status.get("time", 0.0)), 3), "nodes": nodes, "healthy": healthy, "rps": rps}


class LiveFarm:
    """The status hub and the history ring of one controller."""

    def __init__(self, farm: intents.Farm) -> None:
        self._farm = farm
        self.history: deque[dict[str, Any]] = deque(maxlen=int(HISTORY_SECONDS / SAMPLE_INTERVAL))
        self._status_text = ""
        self._status_version = 0
        self._signature = ""
        self._listeners: set[asyncio.Event] = set()
        self._poller: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"<LiveFarm [listeners: {len(self._listeners)} | samples: {len(self.history)} | "
                f"status version: {self._status_version}]>")

    def start(self) -> None:
        """Start sampling history (idempotent). Needs a running loop: the API calls it at
        mount time when there is one, and again on each dashboard request otherwise."""
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample_forever(), name="dashboard-history")

    async def frames(self) -> AsyncIterator[str]:
        """Server-sent events: ``status`` now and on each change, ``sample`` for each new
        history point, and a comment every ``KEEPALIVE`` s so dead connections are noticed."""
        wake = asyncio.Event()
        if self._poller is None or self._poller.done():
            self._signature = ""  # nobody was listening: the first poll publishes, fresh
            self._poller = asyncio.create_task(self._poll_status(), name="dashboard-status")
        elif self._status_version:
            wake.set()  # the poller's latest status goes to this listener at once
        self._listeners.add(wake)
        self.start()
        sent_version = 0
        last_sample = self.history[-1]["t"] if self.history else 0.0
        try:
            yield ": connected\n\n"
            while not intents.is_stopped(self._farm):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), KEEPALIVE)
                wake.clear()
                frames = []
                if self._status_version > sent_version:
                    sent_version = self._status_version
                    frames.append(f"id: {sent_version}\nevent: status\ndata: {self._status_text}\n\n")
                for sample in [s for s in self.history if s["t"] > last_sample]:
                    frames.append(f"event: sample\ndata: {json.dumps(sample)}\n\n")
                    last_sample = sample["t"]
                yield "".join(frames) if frames else ": keepalive\n\n"
        finally:
            self._listeners.discard(wake)

    def _notify(self) -> None:
        for wake in self._listeners:
            wake.set()

    async def _poll_status(self) -> None:
        while self._listeners and not intents.is_stopped(self._farm):
            await self._guarded(self._refresh_status)
            await self._pause(STATUS_INTERVAL)

    async def status(self) -> dict[str, Any]:
        """The farm's status as the dashboard reads it (roles carry ``requests_per_s`` and
        ``count``; the full node list, which the map folds by host)."""
        return await intents.status(self._farm, nodes="all")

    async def _refresh_status(self) -> None:
        status = await self.status()
        signature = status_signature(status)
        # Kept fresh even when unchanged, so a new listener's copy has a current ``time``
        # (the page takes the controller's clock from it).
        self._status_text = json.dumps(status, default=str)
        if signature != self._signature:
            self._signature = signature
            self._status_version += 1
            self._notify()

    async def _sample_forever(self) -> None:
        while not intents.is_stopped(self._farm):
            await self._guarded(self._take_sample)
            await self._pause(SAMPLE_INTERVAL)
        self._notify()  # the streams end now, not at their next keepalive

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end at once when the controller stops (its store closes right after)."""
        await intents.until_stopped(self._farm, seconds)

    async def _take_sample(self) -> None:
        self.history.append(sample_from(await self.status()))
        self._notify()

    async def _guarded(self, step: Callable[[], Any]) -> None:
        """A failing read (a store hiccup, a balancer that does not answer) costs one frame,
        never the hub: the next round tries again."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dashboard: reading the farm failed")
