"""The autoscaler's glue, run at the start of every controller tick.

At most once per ``interval`` (the shortest among the roles that autoscale) it takes one
metrics sample (``metrics.MetricsSampler``, in the background), then asks the pure policies
(``decide.autoscale.decide``) for each role with an ``autoscale`` table, and when a role's
count changes hands the new count and its reason to the controller (a ``role.autoscaled``
event). Scale-in then goes through the ordinary reconcile, which drains a role's nodes
through its load balancer before stopping them, picking them by the role's ``victims`` rule.

Between samples it arms a timer for the next one, so sampling keeps its pace whatever the
farm's ``tick``: while a role autoscales the timer wakes the controller (which samples, then
decides on the sample); otherwise it starts the sample itself and wakes nobody, since there is
nothing to decide. Nothing here may fail a tick: a sample that goes wrong is logged and the
policies see fewer readings (which never shrinks a role).

Sampling costs CPU on every host, so its pace follows its readers: a role's autoscale
``interval`` while any role autoscales; else every ``DEFAULT_INTERVAL`` while a person reads
metrics (the faces call ``note_read`` when they serve status, the dashboard's stream or
/metrics) and every ``IDLE_INTERVAL`` when nobody has for ``READ_HOLD`` seconds. Reads are
said explicitly rather than guessed from calls of ``current``: the dashboard's history ring
builds a status every few seconds whether anyone looks or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import zoneinfo
from collections.abc import Callable
from datetime import datetime

from farmhand.controller.context import FarmContext
from farmhand.controller.decide.autoscale import Decision, Memory, Reading, Situation, decide
from farmhand.controller.decide.reconcile import wanted_count
from farmhand.controller.metrics import HORIZON, MetricsSampler, MetricsWindow, PlaneStatsSource
from farmhand.records import RoleState
from farmhand.spec.autoscale import AutoscaleSpec
from farmhand.spec.models import RoleSpec

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 2.0
"""Sampling pace when no role autoscales and someone reads metrics (status, the dashboard)."""
IDLE_INTERVAL = 5.0
"""Sampling pace when no role autoscales and nobody has read metrics for ``READ_HOLD``."""
READ_HOLD = 60.0
"""Seconds after the last read during which metrics count as watched."""
SLACK = 0.02
"""A sample due this soon is taken now (timers fire a hair early or late)."""

ApplyCount = Callable[[str, int, str], None]


class Autoscaler:
    def __init__(self, ctx: FarmContext, apply: ApplyCount, wake: Callable[[], None],
                 plane_stats: PlaneStatsSource) -> None:
        self.ctx = ctx
        self.window = MetricsWindow()
        self.sampler = MetricsSampler(ctx, self.window, plane_stats)
        self._apply = apply
        self._wake = wake
        self._memory: dict[str, Memory] = {}
        self._specs: dict[str, AutoscaleSpec] = {}
        self.decisions: dict[str, Decision] = {}
        """The last decision per role (its reason shows in status)."""
        self._last_sample = -math.inf
        self._last_read = -math.inf
        self._paced_spec: tuple[object, float | None] = (None, None)
        self._sampling: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Autoscaler [roles: {len(self._specs)} | interval: {self.interval:g}s]>"

    @property
    def interval(self) -> float:
        """Seconds between samples now (see the module's docstring)."""
        autoscaling = self._autoscale_interval()
        if autoscaling is not None:
            return autoscaling
        watched = self.ctx.clock.now() - self._last_read < READ_HOLD
        return DEFAULT_INTERVAL if watched else IDLE_INTERVAL

    def note_read(self) -> None:
        """A person reads metrics now (status, the dashboard's stream, /metrics): sample at
        the watched pace for the next ``READ_HOLD`` seconds. Cheap enough to call on every
        read; not for readers that run by themselves (the dashboard's history ring)."""
        idle = self.interval
        self._last_read = self.ctx.clock.now()
        if self.interval < idle and self._sampling is None:
            self._arm(max(self._last_sample + self.interval - self._last_read, 0.0))

    async def tick(self) -> None:
        """Decide on a sample that finished; start the next one when it is due. Samples run
        in the background and wake the controller when done, so a slow host or load
        balancer never slows a tick."""
        now = self.ctx.clock.now()
        sampling = self._sampling
        if sampling is not None and sampling.done():
            self._sampling = None
            try:
                sampling.result()
                self.decide_all(now)
            except Exception:
                log.exception("autoscaling failed this round")
        self._start_sample_if_due(now)

    def _start_sample_if_due(self, now: float) -> None:
        if self._sampling is not None:
            return  # its end wakes the controller, or arms the next one
        due = self._last_sample + self.interval
        if now + SLACK >= due:
            self._last_sample = now
            due = now + self.interval
            self.window.horizon = self._horizon()
            self._sampling = asyncio.ensure_future(self._sample(now))
        self._arm(due - now)

    def _on_timer(self) -> None:
        """A sample is due: with a role to decide for, the controller's tick takes it (and
        decides on it); with none, take it here and wake nobody."""
        self._timer = None
        if self._autoscale_interval() is not None:
            self._wake()
            return
        sampling = self._sampling
        if sampling is not None and sampling.done():
            self._sampling = None
            try:
                sampling.result()
            except Exception:
                log.exception("taking a metrics sample failed")
        self._start_sample_if_due(self.ctx.clock.now())

    async def _sample(self, now: float) -> None:
        try:
            await self.sampler.sample(now)
        finally:
            if self._autoscale_interval() is not None:
                self._wake()
            elif self._timer is None:
                self._arm(self._last_sample + self.interval - self.ctx.clock.now())

    def decide_all(self, now: float) -> None:
        """One decision per autoscaling role from what the window holds now."""
        roles = self.ctx.spec.roles
        for name in [n for n in self._specs if roles.get(n) is None or roles[n].autoscale is None]:
            self._specs.pop(name)
            self._memory.pop(name, None)
            self.decisions.pop(name, None)
        stored = self.ctx.store.roles()
        for name, role in roles.items():
            if role.autoscale is None:
                continue
            if self._specs.get(name) != role.autoscale:
                self._specs[name] = role.autoscale
                self._memory.pop(name, None)  # new rules: start afresh (and hold the count a while)
            decision = decide(self._situation(name, role, role.autoscale, stored.get(name, RoleState(name)), now),
                              self._memory.get(name, Memory()))
            self._memory[name] = decision.memory
            self.decisions[name] = decision
            if decision.changed:
                self._apply(name, decision.wanted, decision.reason)

    def current(self, role: str) -> dict[str, float]:
        """The role's metrics as last sampled (stale ones left out), for status."""
        now = self.ctx.clock.now()
        return {k: round(v, 3) for k, v in self.window.latest(role, self._max_age(), now).items()}

    def node_current(self, node: str) -> dict[str, float]:
        """The node's metrics as last sampled, for status."""
        now = self.ctx.clock.now()
        return {k: round(v, 3) for k, v in self.window.node_latest(node, self._max_age(), now).items()}

    def node_load(self) -> dict[str, float]:
        """How busy each node is (requests in flight, else CPU %), for least-loaded scale-in."""
        now = self.ctx.clock.now()
        load = {}
        for node in self.window.nodes:
            values = self.window.node_latest(node, self._max_age(), now)
            value = values.get("in_flight", values.get("cpu"))
            if value is not None:
                load[node] = value
        return load

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(BaseException):
                await self._sampling
        await self.sampler.close()

    # internals ---------------------------------------------------------------------------

    def _situation(self, name: str, role: RoleSpec, spec: AutoscaleSpec, state: RoleState, now: float) -> Situation:
        current = wanted_count(role, state)
        readings = {}
        for metric in set(spec.metrics()):
            reading = self._reading(name, metric, spec, now)
            if reading is not None:
                readings[metric] = reading
        upper = role.upper_bound if role.upper_bound is not None else max(current, role.lower_bound)
        return Situation(name, spec, role.lower_bound, upper, current, readings, now, _local_time(now, spec.timezone))

    def _reading(self, role: str, metric: str, spec: AutoscaleSpec, now: float) -> Reading | None:
        latest = self.window.current(role, metric)
        if latest is None or now - latest.t > self._max_age(spec, metric):
            return None  # stale: a source that stopped answering has no opinion
        longest = max((rule.for_ for rule in spec.threshold if rule.metric == metric), default=0.0)
        span = max(longest + 2 * spec.interval if longest else 0.0, spec.window)
        history = self.window.history(role, metric, now - span) if span else ()
        return Reading(latest.value, latest.nodes, history)

    def _autoscale_interval(self) -> float | None:
        """The shortest autoscale interval of any role, None when no role autoscales."""
        spec = self.ctx.spec
        if spec is not self._paced_spec[0]:  # a reload: read the roles again
            shortest = min((r.autoscale.interval for r in spec.roles.values() if r.autoscale), default=None)
            self._paced_spec = (spec, shortest)
        return self._paced_spec[1]

    def _max_age(self, spec: AutoscaleSpec | None = None, metric: str | None = None) -> float:
        """How old a sample may be and still count as current (at the slowest pace that
        may have taken it, so a first read after a quiet spell still sees the last one)."""
        autoscaling = self._autoscale_interval()
        age = 3 * (autoscaling if autoscaling is not None else IDLE_INTERVAL) + 0.5
        if spec is not None and metric in spec.external:
            age += spec.external[metric].timeout + spec.interval
        return age

    def _horizon(self) -> float:
        longest = max((rule.for_ for role in self.ctx.spec.roles.values() if role.autoscale
                       for rule in role.autoscale.threshold), default=0.0)
        return max(HORIZON, longest + 60.0)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._on_timer)


def _local_time(now: float, zone: str | None) -> datetime:
    return datetime.fromtimestamp(now, zoneinfo.ZoneInfo(zone) if zone else None)
