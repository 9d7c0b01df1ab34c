"""Live views of a farm for the dashboard: the status stream and 15 minutes of history.

Why one hub per API: every open dashboard wants the status JSON within a second of a change,
and computing it asks each load balancer for its counters. So one task computes it for all
listeners, only while someone listens, and pushes it only when it changed (the clock fields,
which change on every call, are not a change).

Why the cost grows with change, not with size (issue 12.3): at 10,000 nodes the full status
is megabytes and takes a tenth of a second to build. So

- above ``FOLD_AT`` nodes the stream carries the *folded* view: every role and host with its
  counts by state, and only the nodes that need attention (not running healthy); the page
  opens a host with ``/api/status?host=NAME&nodes=all``;
- a listener that has the previous version gets a ``patch``: the status with only the host
  and node rows that changed (and the keys of those that left), not the whole thing;
- the hub waits at least ``1 / STATUS_DUTY`` times what the last status took before the next,
  so a slow status never eats more than a tenth of the loop.

Why a ring in memory: the charts need nodes per role and requests/s for the last 15
minutes. A sample every ``SAMPLE_INTERVAL`` is a few hundred small dicts, not worth a table
in the store; a restarted controller simply starts a new ring. A sample reads only the roles'
counts by state, so it never needs the node list.
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
"""The shortest pause between two statuses (a small farm's pace)."""
STATUS_DUTY = 0.1
"""The largest share of time the hub spends building statuses: the pause after one is at
least its cost divided by this (a 90 ms status at 10,000 nodes: the next 0.9 s later)."""
STATUS_INTERVAL_MAX = 2.0
"""The longest: a busy machine slows the stream, never stops it."""
SAMPLE_INTERVAL = 2.0
HISTORY_SECONDS = 15 * 60
KEEPALIVE = 15.0
FOLD_AT = 300
"""Above this many nodes the stream sends the folded view (``nodes_complete`` false): a map of
tiles stops being readable well before this, and 300 node rows are about 100 kB."""
CLOCK_FIELDS = ("time",)
NODE_CLOCK_FIELDS = ("uptime",)
KEYED_LISTS = (("hosts", "name"), ("nodes", "id"))
"""The status's lists a patch sends row by row: a row is sent when it changed, its key in
``<list>_gone`` when it left. Roles are few and are always sent whole."""


def status_signature(status: dict[str, Any]) -> str:
    """The status without the fields that move with the clock alone, as comparable text."""
    steady = {k: v for k, v in status.items() if k not in CLOCK_FIELDS}
    steady["nodes"] = [_steady_node(node) for node in status.get("nodes", [])]
    return json.dumps(steady, sort_keys=True, default=str)


def _steady_node(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in NODE_CLOCK_FIELDS}


def status_patch(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any] | None:
    """What turns a page's copy of ``before`` into ``after``: ``after`` whose ``hosts`` and
    ``nodes`` hold only the rows that changed or are new (a node whose only change is its
    uptime is left out), with ``hosts_gone`` and ``nodes_gone`` naming the rows that left.

    None when the page needs the whole status: it has none, or the farm's hosts changed (a
    reload), since the page keeps hosts in the order the status gives them."""
    if before is None:
        return None
    if [h.get("name") for h in before.get("hosts", [])] != [h.get("name") for h in after.get("hosts", [])]:
        return None
    patch = {k: v for k, v in after.items() if k not in ("hosts", "nodes")}
    for field, key in KEYED_LISTS:
        steady = _steady_node if field == "nodes" else _same
        old = {row.get(key): steady(row) for row in before.get(field, [])}
        rows = after.get(field, [])
        patch[field] = [row for row in rows if old.get(row.get(key)) != steady(row)]
        kept = {row.get(key) for row in rows}
        patch[f"{field}_gone"] = [name for name in old if name not in kept]
    return patch


def _same(row: dict[str, Any]) -> dict[str, Any]:
    return row


def role_request_rate(role: dict[str, Any]) -> float | None:
    """The one requests/s figure the dashboard shows for a role (table, chart and legend):
    the status row's ``requests_per_s``, where ``intents.request_rate`` put it by one rule."""
    value = role.get("requests_per_s")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def sample_from(status: dict[str, Any]) -> dict[str, Any]:
    """One history point from a status: nodes and healthy (running) nodes per role, from
    each role's counts by state (draining and stopping ones no longer count), and
    requests/s per role (``role_request_rate``). Reads no node row, so the folded status
    of a large farm gives the same point as the full one."""
    nodes: dict[str, int] = {}
    healthy: dict[str, int] = {}
    rps: dict[str, float | None] = {}
    for role in status.get("roles", []):
        states: dict[str, int] = role.get("states") or {}
        name = role["name"]
        nodes[name] = sum(count for state, count in states.items()
                          if state not in (NodeState.DRAINING, NodeState.STOPPING))
        healthy[name] = states.get(NodeState.RUNNING, 0)
        rps[name] = role_request_rate(role)
    return {"t": round(float(status.get("time", 0.0)), 3), "nodes": nodes, "healthy": healthy, "rps": rps}


class LiveFarm:
    """The status hub and the history ring of one controller."""

    def __init__(self, farm: intents.Farm) -> None:
        self._farm = farm
        self.history: deque[dict[str, Any]] = deque(maxlen=int(HISTORY_SECONDS / SAMPLE_INTERVAL))
        self._status_text = ""
        self._patch_text: str | None = None  # from version - 1 to version
        self._status_version = 0
        self._signature = ""
        self._published: dict[str, Any] | None = None  # the status of _status_version
        self._latest: dict[str, Any] = {}  # the latest status, changed or not
        self._status_at = -1.0  # loop time of the latest status
        self._cost = 0.0  # seconds the latest status took to build
        self._nodes_total: int | None = None
        self._listeners: set[asyncio.Event] = set()
        self._poller: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"<LiveFarm [listeners: {len(self._listeners)} | samples: {len(self.history)} | "
                f"status version: {self._status_version} | nodes: {self._nodes_total} | "
                f"last status took {self._cost * 1000:.0f} ms]>")

    def start(self) -> None:
        """Start sampling history (idempotent). Needs a running loop: the API calls it at
        mount time when there is one, and again on each dashboard request otherwise."""
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample_forever(), name="dashboard-history")

    async def frames(self) -> AsyncIterator[str]:
        """Server-sent events: ``status`` (the whole status) now and whenever this listener
        missed a version, ``patch`` (``status_patch``) when it has the one before; ``sample``
        for each new history point; a comment every ``KEEPALIVE`` s so dead connections are
        noticed."""
        wake = asyncio.Event()
        if self._poller is None or self._poller.done():
            self._signature = ""  # nobody was listening: the first poll publishes, fresh
            self._published = None
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
                version = self._status_version
                if version > sent_version:
                    if version == sent_version + 1 and self._patch_text is not None:
                        frames.append(f"id: {version}\nevent: patch\ndata: {self._patch_text}\n\n")
                    else:
                        frames.append(f"id: {version}\nevent: status\ndata: {self._status_text}\n\n")
                    sent_version = version
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
            intents.watched(self._farm)  # someone has the page open (not the history ring)
            await self._guarded(self._refresh_status)
            await self._pause(min(STATUS_INTERVAL_MAX, max(STATUS_INTERVAL, self._cost / STATUS_DUTY)))

    async def status(self) -> dict[str, Any]:
        """The farm's status as the dashboard reads it (roles carry ``requests_per_s``,
        ``count`` and ``states``; hosts their ``states``): every node up to ``FOLD_AT``,
        above that only those that need attention (``nodes_complete`` false: the map folds).

        The size is the last status's; a farm seen for the first time (or one that shrank
        below the line) costs one extra, cheap, call rather than one wrong frame."""
        if self._nodes_total is None or self._nodes_total > FOLD_AT:
            folded = await intents.status(self._farm, nodes="summary")
            self._nodes_total = int(folded.get("nodes_total", 0))
            if self._nodes_total > FOLD_AT:
                return folded
        status = await intents.status(self._farm, nodes="all")
        self._nodes_total = int(status.get("nodes_total", 0))
        return status

    async def _refresh_status(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        status = await self.status()
        signature = status_signature(status)
        # Kept fresh even when unchanged, so a new listener's copy has a current ``time``
        # (the page takes the controller's clock from it).
        self._status_text = json.dumps(status, default=str)
        if signature != self._signature:
            patch = status_patch(self._published, status)
            self._patch_text = None if patch is None else json.dumps(patch, default=str)
            self._signature = signature
            self._published = status
            self._status_version += 1
            self._notify()
        self._status_at = loop.time()
        self._latest = status
        self._cost = self._status_at - began

    async def _sample_forever(self) -> None:
        while not intents.is_stopped(self._farm):
            await self._guarded(self._take_sample)
            await self._pause(SAMPLE_INTERVAL)
        self._notify()  # the streams end now, not at their next keepalive

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end at once when the controller stops (its store closes right after)."""
        await intents.until_stopped(self._farm, seconds)

    async def _take_sample(self) -> None:
        """A history point from the stream's latest status when it is fresh (a dashboard is
        open), else from a summary (roles' counts are all a sample reads)."""
        fresh = asyncio.get_running_loop().time() - self._status_at < SAMPLE_INTERVAL / 2
        status = self._latest if fresh else await intents.status(self._farm, nodes="summary")
        self.history.append(sample_from(status))
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
