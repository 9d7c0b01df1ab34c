"""The controller's short memory of every metric, and the sampling that fills it.

``MetricsWindow`` keeps (time, value) series per role for the last few minutes and each
node's latest values, in memory only: enough for the autoscaling policies (stabilization
windows, threshold durations) and for the dashboard's charts, and nothing worth persisting
(after a restart the autoscaler holds counts until it has seen fresh samples anyway).

``MetricsSampler`` takes one sample of everything: per node CPU %, RSS and connections
(``Driver.node_metrics``; connections only while a role's autoscale policy names them, since
counting them is the costly part on a local host, see ``wanted_node_metrics``), per host the
load average (``Driver.host_metrics``), per role what its load balancer says
(``DataPlanes.stats``, typed ``PlaneStats``), and external metrics (a Prometheus text endpoint
or a command). Which figure each metric takes from a sample is the reader
``farmhand.registry.METRICS`` names (``controller/readings.py``). Every source is bounded in
time and read defensively: a missing key, a silent host or a failing command leaves that metric out of the
sample, which the policies read as "no opinion", never as zero.

Requests per second are computed here between two samples, as requests *arriving*: the
listeners' ``requests`` counters (answered) plus the growth of requests in flight to the
backends and waiting for one. The engines' own ``requests_per_s`` averages answers over ~10 s,
which would hide the first seconds of an overload, and answers alone stop growing once a node
saturates; the engine's figure is the fallback (first sample, a counter that went backwards
after a worker restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from farmhand.controller.context import FarmContext
from farmhand.controller.readings import RoleSample, read_all
from farmhand.dataplane import PlaneStats
from farmhand.drivers.base import OPTIONAL_NODE_METRICS, NodeMetrics, RunningNode
from farmhand.drivers.local import run_shell
from farmhand.records import NodeRecord, NodeState
from farmhand.spec.autoscale import ExternalMetric
from farmhand.spec.models import FarmSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
HORIZON = 600.0
"""Seconds of history kept by default (the autoscaler raises it for long threshold rules)."""
IO_TIMEOUT = 2.0
"""Longest wait for one host's or one load balancer's answer within a sample (samples run
in the background: a slow source delays only its own metrics)."""
PlaneStatsSource = Callable[[], Awaitable[dict[str, PlaneStats]]]
"""Every running data plane's stats, parsed (``DataPlanes.stats``: bounded in time, a plane
that does not answer is left out)."""
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class Series:
    """(time, value) samples of one metric, oldest first, at most ``horizon`` seconds old."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()

    def __repr__(self) -> str:
        return f"<Series [{len(self.points)} points]>"

    def add(self, t: float, value: float, horizon: float) -> None:
        self.points.append((t, value))
        while self.points and t - self.points[0][0] > horizon:
            self.points.popleft()

    def latest(self) -> tuple[float, float] | None:
        return self.points[-1] if self.points else None

    def since(self, start: float) -> tuple[tuple[float, float], ...]:
        recent: list[tuple[float, float]] = []
        for point in reversed(self.points):
            if point[0] < start:
                break
            recent.append(point)
        return tuple(reversed(recent))


@dataclass(frozen=True)
class Current:
    """A metric's newest sample and how many serving nodes it was measured over."""

    t: float
    value: float
    nodes: int


class MetricsWindow:
    """Every metric of every role and node over the last ``horizon`` seconds."""

    def __init__(self, horizon: float = HORIZON) -> None:
        self.horizon = horizon
        self.roles: dict[str, dict[str, Series]] = defaultdict(dict)
        self.nodes: dict[str, dict[str, tuple[float, float]]] = {}
        """Per node only each metric's latest (time, value): nothing reads a node's history,
        and at 10,000 nodes a series (a deque and its object) per metric per node was the
        largest part of what the garbage collector walked, which set a storm tick's p95."""
        self._measured_over: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"<MetricsWindow [roles: {len(self.roles)} | nodes: {len(self.nodes)}]>"

    def record_role(self, role: str, t: float, values: dict[str, tuple[float, int]]) -> None:
        series = self.roles[role]
        for name, (value, nodes) in values.items():
            series.setdefault(name, Series()).add(t, value, self.horizon)
            self._measured_over[(role, name)] = nodes

    def record_node(self, node: str, t: float, values: dict[str, float]) -> None:
        if values:
            latest = self.nodes.setdefault(node, {})
            for name, value in values.items():
                latest[name] = (t, value)

    def current(self, role: str, name: str) -> Current | None:
        series = self.roles.get(role, {}).get(name)
        point = series.latest() if series else None
        if point is None:
            return None
        return Current(point[0], point[1], self._measured_over.get((role, name), 0))

    def history(self, role: str, name: str, start: float) -> tuple[tuple[float, float], ...]:
        series = self.roles.get(role, {}).get(name)
        return series.since(start) if series else ()

    def latest(self, role: str, max_age: float, now: float) -> dict[str, float]:
        """The role's metrics sampled within ``max_age`` (older ones are not current)."""
        found = {}
        for name, series in self.roles.get(role, {}).items():
            point = series.latest()
            if point is not None and now - point[0] <= max_age:
                found[name] = point[1]
        return found

    def node_latest(self, node: str, max_age: float, now: float) -> dict[str, float]:
        return {name: value for name, (t, value) in self.nodes.get(node, {}).items() if now - t <= max_age}

    def keep_only(self, roles: Iterable[str], nodes: Iterable[str]) -> None:
        """Forget roles that left the farm and nodes that are gone."""
        keep_roles, keep_nodes = set(roles), set(nodes)
        for name in [r for r in self.roles if r not in keep_roles]:
            del self.roles[name]
        for name in [n for n in self.nodes if n not in keep_nodes]:
            del self.nodes[name]
        self._measured_over = {k: v for k, v in self._measured_over.items() if k[0] in keep_roles}


class _NoReading(Exception):
    """An external metric could not be read; the message says why (shown in events)."""


class MetricsSampler:
    """Takes samples into a ``MetricsWindow`` (the only part of autoscaling that does I/O)."""

    def __init__(self, ctx: FarmContext, window: MetricsWindow, plane_stats: PlaneStatsSource) -> None:
        self.ctx = ctx
        self.window = window
        self._plane_stats = plane_stats
        self._counters: dict[str, tuple[float, float, float]] = {}
        self._external: dict[tuple[str, str], asyncio.Task[float]] = {}
        self._failing: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"<MetricsSampler [external fetches: {len(self._external)}]>"

    async def sample(self, now: float) -> None:
        """One sample of every metric of every role; sources that fail are left out."""
        ctx = self.ctx
        serving = [n for n in ctx.store.nodes() if n.state == NodeState.RUNNING and n.pid and n.started_at]
        on_host: dict[str, list[NodeRecord]] = {}
        of_role: dict[str, list[NodeRecord]] = {}
        for node in serving:  # grouped once: hosts x nodes would be quadratic at size
            of_role.setdefault(node.role, []).append(node)
            if node.host in ctx.drivers:
                on_host.setdefault(node.host, []).append(node)
        hosts = sorted(on_host)
        wanted = wanted_node_metrics(ctx.spec)
        for host in hosts:
            ctx.drivers[host].want_metrics(wanted)
        node_answers, host_answers, stats = await asyncio.gather(
            asyncio.gather(*(self._node_metrics(h, on_host[h]) for h in hosts)),
            asyncio.gather(*(_bounded(ctx.drivers[h].host_metrics()) for h in hosts)),
            self._all_plane_stats())
        per_node: dict[str, NodeMetrics] = {k: v for answer in node_answers for k, v in answer.items()}
        per_host = {h: m for h, m in zip(hosts, host_answers, strict=True) if m is not None}
        for role in ctx.spec.roles:
            mine = of_role.get(role, [])
            plane = stats.get(role)
            sample = RoleSample(
                serving=len(mine),
                nodes=[per_node[n.id] for n in mine if n.id in per_node],
                host_loads=[per_host[h].load1 for h in {n.host for n in mine} if h in per_host],
                plane=plane,
                request_rate=self._request_rate(role, plane, now) if plane is not None else None)
            values = read_all(sample) | self._external_values(role, len(mine))
            self.window.record_role(role, now, values)
            for node in mine:
                self.window.record_node(node.id, now, _one_node(node, per_node.get(node.id), plane))
        self.window.keep_only(ctx.spec.roles, (n.id for n in ctx.store.nodes()))

    async def close(self) -> None:
        for task in self._external.values():
            task.cancel()
        for task in self._external.values():
            with contextlib.suppress(BaseException):
                await task
        self._external.clear()

    # sources ------------------------------------------------------------------------------

    async def _all_plane_stats(self) -> dict[str, PlaneStats]:
        """The planes' stats (each bounded in time by ``DataPlanes.stats``), or none when
        reading them failed: a sample leaves out what does not answer, it never fails."""
        try:
            return await self._plane_stats()
        except Exception as error:
            log.debug("data plane stats failed: %s", error)
            return {}

    async def _node_metrics(self, host: str, nodes: list[NodeRecord]) -> dict[str, NodeMetrics]:
        running = [RunningNode(n.id, n.pid or 0, n.started_at or 0.0) for n in nodes]
        answer = await _bounded(self.ctx.drivers[host].node_metrics(running))
        return answer or {}

    def _request_rate(self, role: str, stats: PlaneStats, now: float) -> float | None:
        """Requests *arriving* per second: those answered since the last sample plus the
        growth of those in flight or waiting. Counting answers alone would hide an
        overload, since a saturated node answers no faster than its capacity."""
        answered = stats.requests_total
        if answered is None:
            return stats.requests_per_s
        arrived = answered + stats.busy
        before = self._counters.get(role)
        self._counters[role] = (now, answered, arrived)
        if before is None or answered < before[1] or now - before[0] <= 0:
            return stats.requests_per_s
        return max(0.0, arrived - before[2]) / (now - before[0])

    def _external_values(self, role: str, serving: int) -> dict[str, tuple[float, int]]:
        """Collect the external fetches that finished and start the next ones. Fetches run in
        the background so a slow endpoint or command never slows the controller's tick."""
        spec = self.ctx.spec.roles[role].autoscale
        values: dict[str, tuple[float, int]] = {}
        wanted = dict(spec.external) if spec else {}
        for key in [k for k in self._external if k[0] == role and k[1] not in wanted]:
            self._external.pop(key).cancel()
        for name, source in wanted.items():
            key = (role, name)
            task = self._external.get(key)
            if task is not None and not task.done():
                continue
            if task is not None:
                error = task.exception()
                if error is None:
                    values[name] = (task.result(), serving)
                    self._recovered(key)
                else:
                    self._failed(key, error)
            self._external[key] = asyncio.ensure_future(self._fetch(source))
        return values

    async def _fetch(self, source: ExternalMetric) -> float:
        if source.command is not None:
            return await _run_command(source.command, source.timeout, str(self.ctx.farm_file.parent))
        assert source.prometheus is not None and source.metric is not None
        return await _scrape(source.prometheus, source.metric, source.labels, source.timeout)

    def _failed(self, key: tuple[str, str], error: BaseException) -> None:
        text = str(error) if isinstance(error, _NoReading) else f"{type(error).__name__}: {error}"
        if self._failing.get(key) != text:
            self._failing[key] = text
            self.ctx.events.add("autoscale.metric", f"role {key[0]}: metric {key[1]} cannot be read: {text}", key[0])

    def _recovered(self, key: tuple[str, str]) -> None:
        if self._failing.pop(key, None) is not None:
            self.ctx.events.add("autoscale.metric", f"role {key[0]}: metric {key[1]} can be read again", key[0])


def wanted_node_metrics(spec: FarmSpec) -> frozenset[str]:
    """The optional node metrics (``OPTIONAL_NODE_METRICS``) some role's autoscale policy
    reads; nothing else reads them (status and the dashboard show CPU and RSS)."""
    return frozenset(name for role in spec.roles.values() if role.autoscale
                     for name in role.autoscale.metrics() if name in OPTIONAL_NODE_METRICS)


def _one_node(node: NodeRecord, metrics: NodeMetrics | None, plane: PlaneStats | None) -> dict[str, float]:
    """A node's own series (the dashboard's charts, and the least-loaded victim choice)."""
    values: dict[str, float] = {}
    if metrics is not None:
        values |= {"cpu": metrics.cpu_percent, "rss_mb": metrics.rss_bytes / 1e6}
        if metrics.connections is not None:
            values["connections"] = metrics.connections
    active = plane.in_flight(node.id) if plane is not None else None
    if active is not None:
        values["in_flight"] = active
    return values


async def _bounded(call: Awaitable[T]) -> T | None:
    """``call``'s answer, or None when it fails or takes longer than IO_TIMEOUT."""
    try:
        async with asyncio.timeout(IO_TIMEOUT):
            return await call
    except Exception as error:  # a sample leaves out what does not answer; it never fails the tick
        log.debug("metrics source failed: %s", error)
        return None


async def _scrape(url: str, metric: str, labels: dict[str, str], timeout: float) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels``, from Prometheus text."""
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as error:
        raise _NoReading(f"GET {url}: {error or type(error).__name__}") from error
    if response.status_code != 200:
        raise _NoReading(f"GET {url} answered {response.status_code}")
    total: float | None = None
    try:
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total = (total or 0.0) + sample.value
    except ValueError as error:
        raise _NoReading(f"{url} is not Prometheus text: {error}") from error
    if total is None:
        match = ",".join(f'{k}="{v}"' for k, v in labels.items())
        raise _NoReading(f"{url} has no sample {metric}{{{match}}}")
    return total


async def _run_command(command: str, timeout: float, cwd: str) -> float:
    """The last number ``command`` prints (run by /bin/sh in the farm's folder)."""
    try:
        result = await run_shell(command, timeout, cwd=cwd)
    except TimeoutError:
        raise _NoReading(f"`{command}` gave no answer within {timeout:g}s") from None
    out, err = result.stdout, result.stderr
    if result.exit_code != 0:
        tail = (err or out).decode(errors="replace").strip().splitlines()
        raise _NoReading(f"`{command}` exited {result.exit_code}" + (f": {tail[-1]}" if tail else ""))
    numbers = _NUMBER.findall(out.decode(errors="replace"))
    if not numbers:
        raise _NoReading(f"`{command}` printed no number")
    return float(numbers[-1])

