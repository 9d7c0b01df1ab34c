"""``roles.R.autoscale``: when a role grows and shrinks, as the farm file says it.

A role scales on metrics (per node, per host, from its load balancer, or external ones) by
policies: *target* tracking (keep a metric per node near a value), *threshold* rules (above X
for a while: add nodes; below Y for a while: remove some) and *schedule* windows that change
min and max at given times. The largest count any policy wants wins. The policy maths lives
in ``farmhand.controller.decide.autoscale``; this module only says what may be written, and
holds the cron-like window syntax, because both the spec's checks and the decisions need
it; the metric catalogue is ``farmhand.registry.METRICS``.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from farmhand.registry import METRICS, MetricInfo
from farmhand.spec.types import Duration, Strict


class TargetPolicy(Strict):
    """Keep ``metric`` per node near ``value``: wanted = ceil(nodes x per node / value)."""

    metric: str
    value: float = Field(gt=0)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    """No change while per node stays within value x (1 +- tolerance): HPA's 10% band."""


class DesiredPolicy(Strict):
    """A metric that states the count itself: an engine's own judgement of how many nodes it
    wants (Dask's scheduler publishes ``dask_scheduler_desired_workers``, a queue may say
    one worker per N jobs). wanted = ceil(value x ``per``), within the role's bounds and the
    usual stabilization."""

    metric: str
    per: float = Field(default=1.0, gt=0)
    """Nodes per unit of the metric (0.1: one node per ten units)."""


class ThresholdPolicy(Strict):
    """Scalr's rule: ``metric`` above ``above`` for ``for``: add ``add`` nodes; below ``below``
    for ``for``: remove ``remove``. The value compared is the role's (the mean over nodes, or
    the load balancer's total). After any change the condition must hold for ``for`` again,
    so one long overload adds nodes one step per ``for``, not one per sample."""

    metric: str
    above: float | None = None
    below: float | None = None
    for_: Duration = Field(default=60.0, alias="for", gt=0)
    add: int = Field(default=1, ge=1)
    remove: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _a_band(self) -> ThresholdPolicy:
        if self.above is None and self.below is None:
            raise ValueError("a threshold needs above = X, below = Y, or both")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError(f"below ({self.below:g}) must be under above ({self.above:g}), or it would flap")
        return self


class ScheduleWindow(Strict):
    """While the current minute matches ``cron`` (minute hour day month weekday, as in
    crontab), the role's min and/or max are these instead."""

    cron: str
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        parse_cron(value)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ScheduleWindow:
        if self.min is None and self.max is None:
            raise ValueError("a schedule window changes min, max or both; give at least one")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @property
    def when(self) -> Cron:
        return parse_cron(self.cron)


class ExternalMetric(Strict):
    """A metric farmhand reads elsewhere: one sample from a Prometheus text endpoint (summed
    over the series whose labels match), or the number a command prints."""

    prometheus: str | None = None
    """URL of a Prometheus text exposition ("http://127.0.0.1:9100/metrics")."""
    metric: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    command: str | None = None
    """Run by the controller's shell on its own machine; its stdout's last number counts."""
    timeout: Duration = 2.0
    kind: Literal["total", "level"] = "total"
    """``total``: shared by the nodes (a queue length); ``level``: compared as it is."""

    @model_validator(mode="after")
    def _one_source(self) -> ExternalMetric:
        if (self.prometheus is None) == (self.command is None):
            raise ValueError('give either prometheus = "URL" (with metric = "name") or command = "..."')
        if self.prometheus is not None:
            if not re.match(r"^https?://", self.prometheus):
                raise ValueError(f'"{self.prometheus}" is not an http(s) URL')
            if not self.metric:
                raise ValueError('a prometheus metric needs metric = "name"')
        elif self.metric or self.labels:
            raise ValueError("metric and labels go with prometheus, not with command")
        return self


class AutoscaleSpec(Strict):
    interval: Duration = Field(default=1.0, ge=0.1)
    """How often metrics are sampled and the policies asked."""
    scale_up_stabilization: Duration = Field(default=2.0, ge=0)
    """A higher count is applied once every recommendation for this long wanted it (two
    samples in a row at the default interval): one noisy sample never adds nodes, yet a new
    node serves within about 4 s of an overload's start (bench/RESULTS.md)."""
    scale_down_stabilization: Duration = Field(default=60.0, ge=0)
    """A lower count is applied once every recommendation for this long allowed it: no
    scale-in followed straight by a scale-out (flapping)."""
    window: Duration = Field(default=5.0, ge=0)
    """Target policies read the mean of this long's samples, not the last one: a rate that
    swings by half around a steady load asks for the steady count, not for its peaks."""
    max_growth: int = Field(default=4, ge=1)
    max_growth_percent: float = Field(default=100.0, ge=0)
    """One step adds at most max(max_growth, current x max_growth_percent / 100) nodes."""
    victims: Literal["newest", "oldest", "least-loaded"] = "newest"
    """Which nodes scale-in removes first (each drained through the load balancer)."""
    timezone: str | None = None
    """For schedule windows ("Europe/Paris"); default: the controller's local time."""
    target: tuple[TargetPolicy, ...] = ()
    desired: tuple[DesiredPolicy, ...] = ()
    threshold: tuple[ThresholdPolicy, ...] = ()
    schedule: tuple[ScheduleWindow, ...] = ()
    external: dict[str, ExternalMetric] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f'"{value}" is not a time zone (use names like "Europe/Paris", "UTC")') from None
        return value

    @model_validator(mode="after")
    def _known_metrics(self) -> AutoscaleSpec:
        if not (self.target or self.desired or self.threshold or self.schedule):
            raise ValueError("autoscale needs at least one policy: [[...autoscale.target]], "
                             "[[...autoscale.desired]], [[...autoscale.threshold]] or [[...autoscale.schedule]]")
        for name in self.external:
            if name in METRICS:
                raise ValueError(f"external metric {name!r} has the name of a built-in metric")
        known = sorted([*METRICS, *self.external])
        for metric in self.metrics():
            if metric not in known:
                raise ValueError(f"unknown metric {metric!r} (known: {', '.join(known)})")
        return self

    def metric_info(self, name: str) -> MetricInfo:
        if name in METRICS:
            return METRICS[name]
        return MetricInfo(self.external[name].kind, "external", f" {name}")

    def metrics(self) -> list[str]:
        """The metrics the policies read."""
        return [p.metric for p in self.target] + [p.metric for p in self.desired] + [p.metric for p in self.threshold]

    def uses_lb(self) -> list[str]:
        """Metrics the policies read from a load balancer."""
        return [m for m in self.metrics() if m in METRICS and METRICS[m].source == "lb"]


# cron-like windows --------------------------------------------------------------------

_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("weekday", 0, 7, _WEEKDAYS))


@dataclass(frozen=True)
class Cron:
    """A parsed crontab time: the minutes it matches. Day and weekday combine as in Vixie
    cron: when both are restricted, either one matching is enough."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday ... 6 = Saturday (7 is read as 0)."""
    any_day: bool
    any_weekday: bool

    def matches(self, when: datetime) -> bool:
        if when.minute not in self.minutes or when.hour not in self.hours or when.month not in self.months:
            return False
        day = when.day in self.days
        weekday = when.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday


def parse_cron(text: str) -> Cron:
    """Five fields: minute hour day month weekday, each ``*``, ``a``, ``a-b``, ``*/n``,
    ``a-b/n`` or a list of those; month and weekday names ("mon-fri", "dec")."""
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f'"{text}" is not a cron time: give 5 fields, minute hour day month weekday '
                         '(such as "* 8-17 * * mon-fri")')
    sets = [_cron_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Cron(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2].startswith("*"), parts[4].startswith("*"))


def _cron_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        match = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?", item)
        if not match:
            raise ValueError(f'cron {name} "{text}": cannot read "{item}"')
        span, step = match.group(1), int(match.group(2) or 1)
        if step < 1:
            raise ValueError(f'cron {name} "{text}": a step must be 1 or more')
        if span == "*":
            first, last = low, high
        else:
            ends = [_cron_value(v, name, low, high, names, text) for v in span.split("-")]
            first, last = ends[0], ends[-1]
            if match.group(2) and len(ends) == 1:
                last = high
            if first > last:
                raise ValueError(f'cron {name} "{text}": {first}-{last} runs backwards')
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _cron_value(text: str, name: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    value = names.get(text) if text.isalpha() else (int(text) if text.isdigit() else None)
    if value is None or not low <= value <= high:
        raise ValueError(f'cron {name} "{field}": "{text}" is not within {low}-{high}')
    return value
