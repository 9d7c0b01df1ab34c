"""Autoscaling: from a role's metric readings, its bounds and the time, the count it should
have now, with a reason that carries the inputs ("web 2 -> 4: 210 req/s per node > target 100").

One decision per metric sample (``decide``), in this order:

1. **Bounds**: the role's min/max, replaced by those of the schedule windows that match now.
2. **Proposals**: each desired policy proposes the count its metric states (times ``per``);
   each target policy proposes ceil(nodes x per node / target), per node taken
   as the mean over the last ``window`` seconds of samples, or the current
   count while per node stays within the tolerance band; each threshold rule whose condition
   has held long enough proposes the count plus or minus its step. The largest proposal wins;
   with no readings at all the count stays (missing metrics never shrink a role).
3. **Stabilization** (the HPA's): every recommendation is remembered. The count rises only
   to the *lowest* recommendation of the last ``scale_up_stabilization`` seconds, and falls
   only to the *highest* of the last ``scale_down_stabilization`` seconds. A one-sample spike
   adds nothing; a short dip removes nothing; so a signal that crosses a line once moves the
   count once, in one direction.
4. **Growth limit**: one step adds at most max(max_growth, current x max_growth_percent).
5. **Bounds win**: a count outside them moves to the nearest bound at once (a schedule window
   that ends lowers max now, not after a stabilization window).

A count that changed behind the autoscaler's back (``farmhand scale``, a reload, a controller
start) starts a fresh memory: the count is held for the stabilization windows from then on.

Pure: time comes in (``now``, and ``local_time`` for schedule windows); the memory of past
recommendations comes in and goes out as a value the caller keeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from farmhand.registry import MetricInfo
from farmhand.spec.autoscale import (
    AutoscaleSpec,
    DesiredPolicy,
    TargetPolicy,
    ThresholdPolicy,
)
from farmhand.units import format_duration

EPSILON = 1e-9
"""Keeps ceil() honest when a ratio that is an integer on paper lands a hair above it."""


@dataclass(frozen=True)
class Reading:
    """One metric of a role, as sampled: the role-level value (the mean over nodes for node
    and host metrics, the total or the level for load-balancer and external ones), how many
    serving nodes it was measured over, and recent (time, value) samples, oldest first."""

    value: float
    nodes: int
    history: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Memory:
    """What a role's autoscaling remembers between decisions."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, recommended count), within the longer stabilization window."""
    last_change: float | None = None
    """When the count last changed (threshold rules wait ``for`` again after it)."""
    count: int | None = None
    """The count the last decision left the role at; another one means it changed by hand."""

    @classmethod
    def fresh(cls, now: float, count: int) -> Memory:
        return cls(((now, count),), now, count)


@dataclass(frozen=True)
class Situation:
    """Everything one decision looks at."""

    role: str
    spec: AutoscaleSpec
    lower: int
    upper: int
    current: int
    readings: Mapping[str, Reading]
    now: float
    local_time: datetime
    """``now`` in the schedule's time zone (the caller converts: that needs the tz database)."""


@dataclass(frozen=True)
class Decision:
    wanted: int
    reason: str
    memory: Memory
    low: int
    high: int
    """The bounds in force now (schedule windows applied)."""
    changed: bool


@dataclass(frozen=True)
class Proposal:
    count: int
    why: str


def decide(situation: Situation, memory: Memory) -> Decision:
    """The role's count after this sample, and why (see the module's docstring)."""
    s, spec = situation, situation.spec
    note = ""
    if memory.count != s.current:
        if memory.count is not None:
            note = f" (count set to {s.current} elsewhere: holding it for the stabilization windows)"
        memory = Memory.fresh(s.now, s.current)
    low, high, window = effective_bounds(spec, s.lower, s.upper, s.local_time)
    proposals = [p for p in _proposals(s, memory) if p is not None]
    best = max(proposals, key=lambda p: p.count, default=Proposal(s.current, _no_proposal(s)))
    recommended = clamp(best.count, low, high)
    horizon = max(spec.scale_up_stabilization, spec.scale_down_stabilization)
    history = tuple((t, n) for t, n in memory.recommendations if s.now - t < horizon) + ((s.now, recommended),)
    why = best.why + _bound_note(best.count, low, high, window)
    if not low <= s.current <= high:
        wanted = clamp(s.current, low, high)
        why = f"outside min/max {low}..{high}{' of ' + window if window else ''}; {best.why}"
    else:
        wanted, stabilized = _stabilize(s.current, recommended, history, s.now, spec)
        wanted, limited = _limit_growth(s.current, wanted, spec)
        why += stabilized + limited
    wanted = clamp(wanted, low, high)
    changed = wanted != s.current
    if changed:
        reason = f"{s.role} {s.current} -> {wanted}: {why}"
    else:
        reason = f"{s.role} stays at {s.current}: {why}{note}"
    kept = Memory(history, s.now if changed else memory.last_change, wanted)
    return Decision(wanted, reason, kept, low, high, changed)


def clamp(count: int, low: int, high: int) -> int:
    return max(low, min(high, count))


def effective_bounds(spec: AutoscaleSpec, lower: int, upper: int, when: datetime) -> tuple[int, int, str]:
    """Min and max now: a matching schedule window replaces them (several matching: the
    largest of each wins, as everywhere in autoscaling); also the windows' names."""
    matching = [w for w in spec.schedule if w.when.matches(when)]
    if not matching:
        return lower, upper, ""
    mins = [w.min for w in matching if w.min is not None]
    maxes = [w.max for w in matching if w.max is not None]
    low = clamp(max(mins), lower, upper) if mins else lower
    high = clamp(max(maxes), lower, upper) if maxes else upper
    names = ", ".join(f"'{w.cron}'" for w in matching)
    return low, max(low, high), f"schedule {names}"


def per_node(info: MetricInfo, reading: Reading) -> float | None:
    """The value a target is compared with: per node for totals, as it is otherwise."""
    if info.kind == "total":
        return reading.value / max(reading.nodes, 1)
    return reading.value if reading.nodes > 0 else None


def target_proposal(policy: TargetPolicy, info: MetricInfo, reading: Reading, current: int) -> Proposal | None:
    """Keep per node near the target: ceil(nodes x per node / target), i.e. for a total
    ceil(total / target), which does not move while new nodes are still starting."""
    value = per_node(info, reading)
    if value is None:
        return None
    ratio = value / policy.value
    shown = f"{number(value)}{info.unit}{'' if info.kind == 'level' else ' per node'}"
    if abs(ratio - 1) <= policy.tolerance + EPSILON:
        return Proposal(current, f"{shown} within {policy.tolerance:.0%} of target {number(policy.value)}")
    count = math.ceil(max(reading.nodes, 1) * ratio - EPSILON)
    return Proposal(count, f"{shown} {'>' if ratio > 1 else '<'} target {number(policy.value)}")


def desired_proposal(policy: DesiredPolicy, reading: Reading) -> Proposal:
    """The count a metric states itself: ceil(value x per)."""
    count = max(math.ceil(reading.value * policy.per - EPSILON), 0)
    scaled = f" x {number(policy.per)}" if policy.per != 1 else ""
    return Proposal(count, f"{policy.metric} asks for {number(reading.value)}{scaled} node(s)")


def threshold_proposal(policy: ThresholdPolicy, info: MetricInfo, reading: Reading, current: int,
                       now: float, last_change: float | None) -> Proposal | None:
    """Above (below) the line in every sample for ``for``, counted from the last change at
    the earliest: the count plus (minus) the rule's step."""
    lasted = format_duration(policy.for_)
    if policy.above is not None:
        line = policy.above
        if _held(reading.history, lambda v: v > line, now, policy.for_, last_change):
            return Proposal(current + policy.add,
                            f"{number(reading.value)}{info.unit} > {number(line)} for {lasted}: +{policy.add}")
    if policy.below is not None:
        line = policy.below
        if _held(reading.history, lambda v: v < line, now, policy.for_, last_change):
            return Proposal(max(current - policy.remove, 0),
                            f"{number(reading.value)}{info.unit} < {number(line)} for {lasted}: -{policy.remove}")
    return None


def smoothed(reading: Reading, now: float, window: float) -> Reading:
    """The reading with the mean of its last ``window`` seconds of samples as its value."""
    recent = [value for t, value in reading.history if now - t <= window + EPSILON]
    if not recent or window <= 0:
        return reading
    return Reading(sum(recent) / len(recent), reading.nodes, reading.history)


def number(value: float) -> str:
    """Short for people: 210, 12.5, 0.333."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _proposals(s: Situation, memory: Memory) -> list[Proposal | None]:
    found: list[Proposal | None] = []
    for target in s.spec.target:
        reading = s.readings.get(target.metric)
        if reading is not None:
            smooth = smoothed(reading, s.now, s.spec.window)
            found.append(target_proposal(target, s.spec.metric_info(target.metric), smooth, s.current))
    for desired in s.spec.desired:
        reading = s.readings.get(desired.metric)
        if reading is not None:
            found.append(desired_proposal(desired, reading))  # the engine's own judgement, as it is
    for rule in s.spec.threshold:
        reading = s.readings.get(rule.metric)
        if reading is not None:
            found.append(threshold_proposal(rule, s.spec.metric_info(rule.metric), reading, s.current,
                                            s.now, memory.last_change))
    return found


def _no_proposal(s: Situation) -> str:
    if not s.readings:
        return "no readings yet"
    seen = ", ".join(f"{number(r.value)}{s.spec.metric_info(name).unit}" for name, r in sorted(s.readings.items()))
    return f"no policy asks for a change ({seen})"


def _held(history: tuple[tuple[float, float], ...], condition: Callable[[float], bool], now: float,
          duration: float, last_change: float | None) -> bool:
    start: float | None = None
    for t, value in reversed(history):
        if not condition(value):
            break
        start = t
    if start is None:
        return False
    if last_change is not None:
        start = max(start, last_change)
    return now - start >= duration - EPSILON


def _stabilize(current: int, recommended: int, history: tuple[tuple[float, int], ...], now: float,
               spec: AutoscaleSpec) -> tuple[int, str]:
    up = [n for t, n in history if now - t < spec.scale_up_stabilization] or [recommended]
    down = [n for t, n in history if now - t < spec.scale_down_stabilization] or [recommended]
    floor, ceiling = min(up), max(down)
    wanted = current
    if wanted < floor:
        wanted = floor
    if wanted > ceiling:
        wanted = ceiling
    up_window = format_duration(spec.scale_up_stabilization)
    down_window = format_duration(spec.scale_down_stabilization)
    if recommended > current and wanted < recommended:
        if wanted == current:
            return wanted, f" (scale-up waits: {floor} wanted within the last {up_window})"
        return wanted, f" (lowest wanted in the last {up_window}: {floor})"
    if recommended < current and wanted > recommended:
        if wanted == current:
            return wanted, f" (scale-down waits: {ceiling} wanted within the last {down_window})"
        return wanted, f" (highest wanted in the last {down_window}: {ceiling})"
    return wanted, ""


def _limit_growth(current: int, wanted: int, spec: AutoscaleSpec) -> tuple[int, str]:
    step = max(spec.max_growth, math.ceil(current * spec.max_growth_percent / 100 - EPSILON))
    if wanted > current + step:
        return current + step, f" (growth limited to +{step} per step)"
    return wanted, ""


def _bound_note(proposed: int, low: int, high: int, window: str) -> str:
    where = f" of {window}" if window else ""
    if proposed < low:
        return f" (wants {proposed}, kept at min {low}{where})"
    if proposed > high:
        return f" (wants {proposed}, capped at max {high}{where})"
    return ""
