"""The autoscaling maths, as a spec: readings + bounds + time -> count and reason.

A ``Role`` walks one role through time one sample at a time, the way the controller does
(each decision's memory fed to the next), so stabilization windows and threshold durations
are tested in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from farmhand.controller.decide.autoscale import (
    Decision,
    Memory,
    Reading,
    Situation,
    decide,
    effective_bounds,
)
from farmhand.spec.autoscale import AutoscaleSpec

WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0)


def rules(**settings: Any) -> AutoscaleSpec:
    """Policies that read each sample as it is (``window = "0s"``), so the stabilization
    tests see exactly the values they feed; smoothing has tests of its own."""
    settings.setdefault("target", [{"metric": "requests_per_s", "value": 100}])
    settings.setdefault("window", "0s")
    return AutoscaleSpec.model_validate(settings)


@dataclass
class Role:
    spec: AutoscaleSpec
    count: int = 1
    lower: int = 1
    upper: int = 10
    now: float = 0.0
    start: datetime = WEDNESDAY_NOON
    memory: Memory = field(default_factory=Memory)
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    def sample(self, step: float = 1.0, nodes: int | None = None, **values: float) -> Decision:
        """One sample: the given metric values (each measured over ``nodes``, default: the
        current count), then the decision, applied; time moves on by ``step``."""
        readings = {}
        for name, value in values.items():
            series = self.history.setdefault(name, [])
            series.append((self.now, value))
            readings[name] = Reading(value, self.count if nodes is None else nodes, tuple(series))
        situation = Situation("web", self.spec, self.lower, self.upper, self.count, readings, self.now,
                              self.start + timedelta(seconds=self.now))
        decision = decide(situation, self.memory)
        self.memory, self.count = decision.memory, decision.wanted
        self.decisions.append(decision)
        self.now += step
        return decision

    def load(self, total: float, step: float = 1.0) -> Decision:
        """A world where a fixed total of requests/s is shared by the current nodes."""
        return self.sample(step, requests_per_s=total)


def settled(spec: AutoscaleSpec, count: int, **kwargs: Any) -> Role:
    """A role that has sat at ``count`` for two minutes, sampled every second."""
    role = Role(spec, count=count, **kwargs)
    role.memory = Memory(tuple((float(t), count) for t in range(-120, 0)), -1000.0, count)
    return role


# reasons and formulas ---------------------------------------------------------------------

def test_the_reason_carries_the_inputs() -> None:
    role = settled(rules(scale_up_stabilization="0s"), count=2)
    decision = role.sample(requests_per_s=420)
    assert decision.changed and decision.wanted == 5
    assert decision.reason == "web 2 -> 5: 210 req/s per node > target 100"


def test_target_tracking_per_kind_of_metric() -> None:
    cpu = settled(rules(target=[{"metric": "cpu", "value": 60}], scale_up_stabilization="0s"), count=3)
    assert cpu.sample(cpu=90).wanted == 5, "mean: ceil(3 x 90 / 60)"
    latency = settled(rules(target=[{"metric": "p95_ms", "value": 100}], scale_up_stabilization="0s"), count=2)
    decision = latency.sample(p95_ms=300)
    assert decision.wanted == 6 and "300 ms p95 > target 100" in decision.reason
    assert "per node" not in decision.reason, "a latency is not shared by the nodes"


def test_inside_the_tolerance_nothing_moves_and_the_reason_says_so() -> None:
    role = settled(rules(), count=4)
    decision = role.sample(requests_per_s=4 * 108)
    assert not decision.changed
    assert decision.reason == "web stays at 4: 108 req/s per node within 10% of target 100"


def test_nodes_still_starting_do_not_inflate_the_count() -> None:
    """2 serving nodes at 200 req/s each asked for 4; while the 2 new ones start the same
    total keeps asking for 4, not 4 x 2."""
    role = settled(rules(scale_up_stabilization="0s"), count=2)
    assert role.sample(requests_per_s=400).wanted == 4
    for _ in range(5):
        assert role.sample(nodes=2, requests_per_s=400).wanted == 4


def test_missing_readings_never_shrink_a_role() -> None:
    role = settled(rules(scale_down_stabilization="0s"), count=5)
    for _ in range(100):
        decision = role.sample()
    assert decision.wanted == 5 and "no readings yet" in decision.reason


def test_the_largest_count_among_policies_wins() -> None:
    spec = rules(target=[{"metric": "requests_per_s", "value": 100}, {"metric": "cpu", "value": 50}],
                 scale_up_stabilization="0s")
    role = settled(spec, count=2)
    decision = role.sample(requests_per_s=250, cpu=100)
    assert decision.wanted == 4 and "100% CPU per node > target 50" in decision.reason


# stabilization ----------------------------------------------------------------------------

def test_a_spike_shorter_than_the_scale_up_window_adds_nothing() -> None:
    role = settled(rules(scale_up_stabilization="3s"), count=1)
    for total in (50, 500, 500, 50, 50):
        role.load(total)
    assert role.count == 1
    assert "scale-up waits: 1 wanted within the last 3s" in role.decisions[2].reason


def test_a_sustained_overload_scales_up_once_the_window_has_passed() -> None:
    role = settled(rules(scale_up_stabilization="3s"), count=1)
    counts = [role.load(400).wanted for _ in range(5)]
    assert counts == [1, 1, 4, 4, 4], "three samples in a row (2s apart end to end) inside a 3s window"


def test_scale_down_waits_for_the_whole_down_window() -> None:
    role = settled(rules(), count=4)
    role.load(400)
    counts = [role.load(50).wanted for _ in range(61)]
    assert counts[:59] == [4] * 59 and counts[59:] == [1, 1]
    assert role.decisions[-2].reason == (
        "web 4 -> 1: 12.5 req/s per node < target 100")


def test_a_dip_shorter_than_the_down_window_removes_nothing() -> None:
    role = settled(rules(), count=4)
    for _ in range(5):
        for _ in range(50):
            role.load(40)
        for _ in range(3):
            role.load(400)
    assert {d.wanted for d in role.decisions} == {4}


def test_growth_is_limited_per_step() -> None:
    role = settled(rules(scale_up_stabilization="0s", max_growth=4, max_growth_percent=100), count=2, upper=30)
    counts = [role.load(2000).wanted for _ in range(4)]
    assert counts == [6, 12, 20, 20], "+max(4, 100%) each step"
    assert "(growth limited to +4 per step)" in role.decisions[0].reason


def test_a_count_changed_by_hand_is_held_for_the_windows() -> None:
    role = settled(rules(), count=2)
    role.load(200)
    role.count = 6  # farmhand scale web 6
    decision = role.load(200)
    assert decision.wanted == 6 and "count set to 6 elsewhere" in decision.reason
    assert [role.load(200).wanted for _ in range(58)][-1] == 6
    assert [role.load(200).wanted for _ in range(3)][-1] == 2


# thresholds -------------------------------------------------------------------------------

def test_a_threshold_adds_after_its_duration_then_waits_again() -> None:
    spec = rules(target=[], threshold=[{"metric": "load1", "above": 2, "below": 0.5, "for": "10s", "add": 2}],
                 scale_up_stabilization="0s", scale_down_stabilization="0s")
    role = settled(spec, count=1)
    counts = [role.sample(load1=3.0).wanted for _ in range(25)]
    assert counts.index(3) == 10 and counts.index(5) == 20, "+2 at 10s, again 10s after the change"
    assert "3 load > 2 for 10s: +2" in role.decisions[10].reason
    counts = [role.sample(load1=0.1).wanted for _ in range(12)]
    assert counts[-1] == 4 and counts.count(4) == 2


def test_inside_the_threshold_band_the_reason_shows_the_reading() -> None:
    spec = rules(target=[], threshold=[{"metric": "load1", "above": 2, "below": 0.5}])
    assert settled(spec, count=2).sample(load1=1.25).reason == "web stays at 2: no policy asks for a change (1.25 load)"


def test_a_threshold_condition_broken_once_starts_over() -> None:
    spec = rules(target=[], threshold=[{"metric": "load1", "above": 2, "for": "5s"}], scale_up_stabilization="0s")
    role = settled(spec, count=1)
    for value in (3, 3, 3, 3, 1, 3, 3, 3, 3, 3):
        role.sample(load1=value)
    assert role.count == 1, "above from t=5 to t=9: 4s only"
    role.sample(load1=3)
    assert role.count == 2, "t=10: 5s above"


# schedule windows -------------------------------------------------------------------------

def test_a_schedule_window_raises_min_at_once_and_names_itself() -> None:
    spec = rules(schedule=[{"cron": "* 8-17 * * mon-fri", "min": 3}])
    role = settled(spec, count=1)
    decision = role.load(10)
    assert decision.wanted == 3 and (decision.low, decision.high) == (3, 10)
    assert "outside min/max 3..10 of schedule '* 8-17 * * mon-fri'" in decision.reason


def test_outside_its_window_the_role_bounds_apply_again() -> None:
    spec = rules(schedule=[{"cron": "* 8-11 * * mon-fri", "max": 2}])
    assert effective_bounds(spec, 1, 10, WEDNESDAY_NOON) == (1, 10, "")
    assert effective_bounds(spec, 1, 10, WEDNESDAY_NOON.replace(hour=9))[:2] == (1, 2)
    assert effective_bounds(spec, 1, 10, WEDNESDAY_NOON.replace(day=28, hour=9))[:2] == (1, 10), "a Saturday"
    role = settled(spec, count=5, start=WEDNESDAY_NOON.replace(hour=9))
    assert role.load(500).wanted == 2, "a lower max applies now, not after a window"


def test_overlapping_windows_take_the_largest_bounds() -> None:
    spec = rules(schedule=[{"cron": "* * * * *", "min": 2, "max": 4}, {"cron": "* 12 * * *", "min": 3, "max": 3}])
    assert effective_bounds(spec, 1, 10, WEDNESDAY_NOON)[:2] == (3, 4)


# properties -------------------------------------------------------------------------------

readings = st.fixed_dictionaries({}, optional={
    "requests_per_s": st.floats(0, 5000, allow_nan=False),
    "cpu": st.floats(0, 400, allow_nan=False),
    "load1": st.floats(0, 20, allow_nan=False),
})
windows = st.lists(st.fixed_dictionaries({
    "cron": st.sampled_from(["* * * * *", "* 12 * * *", "* 8-11 * * mon-fri", "0-29 * * * *"]),
    "min": st.integers(1, 6), "max": st.integers(6, 12)}), max_size=3)


@given(st.lists(st.tuples(readings, st.floats(0.1, 30)), min_size=1, max_size=60), windows,
       st.integers(0, 20), st.integers(1, 10), st.integers(0, 100))
def test_bounds_always_hold(story: list[tuple[dict[str, float], float]], schedule: list[dict[str, Any]],
                            start_count: int, growth: int, percent: int) -> None:
    spec = rules(target=[{"metric": "requests_per_s", "value": 100}, {"metric": "cpu", "value": 70}],
                 threshold=[{"metric": "load1", "above": 4, "below": 1, "for": "5s", "add": 3, "remove": 2}],
                 schedule=schedule, scale_up_stabilization="2s", scale_down_stabilization="20s",
                 max_growth=growth, max_growth_percent=percent)
    role = Role(spec, count=start_count, lower=1, upper=12)
    for values, step in story:
        decision = role.sample(step, **values)
        low, high, _ = effective_bounds(spec, 1, 12, role.start + timedelta(seconds=role.now - step))
        assert low <= decision.wanted <= high
        assert 1 <= decision.wanted <= 12


@given(st.integers(1, 10), st.lists(st.floats(-1, 1), min_size=1, max_size=80), st.floats(0, 0.5))
def test_a_steady_signal_inside_the_tolerance_never_changes_the_count(count: int, wobble: list[float],
                                                                      tolerance: float) -> None:
    spec = rules(target=[{"metric": "requests_per_s", "value": 100, "tolerance": tolerance}],
                 scale_up_stabilization="0s", scale_down_stabilization="0s")
    role = Role(spec, count=count, upper=10)
    for w in wobble:
        role.load(count * 100 * (1 + w * tolerance))
        assert role.count == count


@given(st.integers(1, 10), st.floats(0, 3000), st.floats(0, 3000), st.integers(1, 60), st.integers(1, 200),
       st.sampled_from(["0s", "3s", "10s"]), st.sampled_from(["0s", "10s", "60s"]))
def test_a_signal_that_crosses_once_moves_the_count_one_way(start: int, before: float, after: float,
                                                            steps_before: int, steps_after: int,
                                                            up: str, down: str) -> None:
    """Load steps once from one level to another (the nodes share it: per node = total / n).
    After the step the count only moves toward the new level: never up then down (flapping)."""
    spec = rules(scale_up_stabilization=up, scale_down_stabilization=down)
    role = settled(spec, count=start, upper=30)
    for _ in range(steps_before):
        role.load(before)
    at_step = role.count
    counts = [role.load(after).wanted for _ in range(steps_after)]
    moves = {math.copysign(1, b - a) for a, b in zip([at_step, *counts], counts, strict=False) if b != a}
    assert len(moves) <= 1, f"the count went both ways: {[at_step, *counts]}"


@given(st.floats(1, 3000), st.integers(1, 20))
def test_under_constant_load_the_count_settles_where_per_node_meets_the_target(total: float, start: int) -> None:
    spec = rules(scale_up_stabilization="0s", scale_down_stabilization="0s", max_growth=100)
    role = settled(spec, count=start, upper=50)
    for _ in range(10):
        role.load(total)
    settled_at = role.count
    for _ in range(20):
        assert role.load(total).wanted == settled_at
    per_node = total / settled_at
    assert per_node <= 100 * 1.1 and (settled_at == 1 or per_node >= 100 * 0.9 or total / (settled_at - 1) > 100)


@given(st.lists(st.floats(0, 10000), min_size=1, max_size=30), st.integers(1, 8), st.integers(0, 300))
def test_no_step_grows_more_than_the_limit(totals: list[float], growth: int, percent: int) -> None:
    spec = rules(scale_up_stabilization="0s", max_growth=growth, max_growth_percent=percent)
    role = settled(spec, count=1, upper=1000)
    for total in totals:
        before = role.count
        after = role.load(total).wanted
        assert after - before <= max(growth, math.ceil(before * percent / 100))


@given(st.floats(0, 8), st.floats(0, 8), st.integers(1, 8), st.integers(0, 40), st.integers(1, 120),
       st.sampled_from(["1s", "5s", "30s"]))
def test_a_threshold_crossed_once_moves_the_count_one_way(before: float, after: float, start: int,
                                                          steps_before: int, steps_after: int, lasting: str) -> None:
    spec = rules(target=[], threshold=[{"metric": "load1", "above": 4, "below": 1, "for": lasting}],
                 scale_down_stabilization="10s")
    role = settled(spec, count=start)
    for _ in range(steps_before):
        role.sample(load1=before)
    at_step = role.count
    counts = [role.sample(load1=after).wanted for _ in range(steps_after)]
    moves = {math.copysign(1, b - a) for a, b in zip([at_step, *counts], counts, strict=False) if b != a}
    assert len(moves) <= 1, f"the count went both ways: {[at_step, *counts]}"


def test_a_proposal_under_min_is_kept_at_min_and_says_so() -> None:
    role = settled(rules(scale_down_stabilization="0s"), count=4, lower=2)
    assert role.load(50).reason == "web 4 -> 2: 12.5 req/s per node < target 100 (wants 1, kept at min 2)"


# smoothing --------------------------------------------------------------------------------

NOISY_150 = (64, 178, 150, 120, 178, 170, 96, 160, 178, 140, 130, 178, 150, 110, 166, 178)
"""A steady 150 req/s as a loaded two-core machine measures it: swinging from 64 to 178."""


def test_a_steady_threefold_load_that_swings_settles_at_three_and_never_overshoots() -> None:
    role = settled(rules(target=[{"metric": "requests_per_s", "value": 50}], window="5s"), count=1)
    counts = [role.load(total).wanted for _ in range(8) for total in NOISY_150]
    assert max(counts) == 3, "peaks of 178 req/s must not ask for a fourth node"
    assert counts[-40:] == [3] * 40


def test_without_a_window_the_same_load_overshoots() -> None:
    """The reason for the window: read sample by sample, the peaks ask for 4 nodes."""
    role = settled(rules(target=[{"metric": "requests_per_s", "value": 50}], window="0s"), count=1)
    counts = [role.load(total).wanted for _ in range(8) for total in NOISY_150]
    assert max(counts) == 4


def test_a_step_in_load_still_scales_up_through_the_window() -> None:
    role = settled(rules(window="5s"), count=1)
    role.history["requests_per_s"] = [(float(t), 0.0) for t in range(-10, 0)]
    counts = [role.load(400).wanted for _ in range(10)]
    assert counts[-1] == 4 and counts.index(4) <= 6


# a metric that states the count ----------------------------------------------------------

def desired_rules(**settings: Any) -> AutoscaleSpec:
    return rules(target=[], desired=[{"metric": "wanted", **settings.pop("policy", {})}],
                 external={"wanted": {"command": "echo 1", "kind": "level"}}, **settings)


def test_a_desired_count_metric_is_followed_within_the_bounds_and_windows() -> None:
    role = settled(desired_rules(scale_up_stabilization="0s", scale_down_stabilization="3s"), count=2, upper=6)
    decision = role.sample(wanted=5)
    assert decision.wanted == 5 and "wanted asks for 5 node(s)" in decision.reason
    assert role.sample(wanted=40).wanted == 6, "max wins"
    counts = [role.sample(wanted=1).wanted for _ in range(5)]
    assert counts == [6, 6, 1, 1, 1], "down only once no sample of the last 3s wanted more"


def test_a_desired_count_can_be_scaled_per_unit() -> None:
    role = settled(desired_rules(policy={"per": 0.1}, scale_up_stabilization="0s"), count=1, upper=10)
    decision = role.sample(wanted=42)
    assert decision.wanted == 5 and "wanted asks for 42 x 0.1 node(s)" in decision.reason


def test_the_largest_of_a_desired_count_and_a_target_wins() -> None:
    spec = rules(desired=[{"metric": "wanted"}], external={"wanted": {"command": "echo 1", "kind": "level"}},
                 scale_up_stabilization="0s")
    role = settled(spec, count=1, upper=10)
    assert role.sample(wanted=2, requests_per_s=400).wanted == 4
    assert role.sample(wanted=7, requests_per_s=400).wanted == 7
