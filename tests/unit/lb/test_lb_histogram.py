"""Latency histograms: bucket bounds, percentiles, merging."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from farmhand.lb.builtin import histogram


@given(st.floats(min_value=0, max_value=100))
def test_a_duration_falls_inside_its_bucket(seconds: float) -> None:
    index = histogram.bucket_of(seconds)
    low, high = histogram.bucket_bounds(index)
    microseconds = (int(seconds * 1e6) + 1) / 1e6
    assert low <= microseconds < high
    assert high <= max(2 * low, low + 2e-6)  # at most 25% wide, past the first few µs


@given(st.floats(min_value=0, max_value=1e4), st.floats(min_value=0, max_value=1e4))
def test_buckets_are_ordered_like_durations(a: float, b: float) -> None:
    if a <= b:
        assert histogram.bucket_of(a) <= histogram.bucket_of(b)


def test_very_slow_requests_land_in_the_last_bucket() -> None:
    assert histogram.bucket_of(1e9) == histogram.SIZE - 1


def test_percentiles_and_summary() -> None:
    counts = histogram.new()
    for _ in range(90):
        counts[histogram.bucket_of(0.001)] += 1
    for _ in range(10):
        counts[histogram.bucket_of(0.100)] += 1
    p50 = histogram.percentile(counts, 0.5)
    p99 = histogram.percentile(counts, 0.99)
    assert p50 is not None and 0.0008 < p50 < 0.0013
    assert p99 is not None and 0.08 < p99 < 0.13
    summary = histogram.summary(counts)
    assert summary["count"] == 100
    assert histogram.percentile(histogram.new(), 0.5) is None


def test_sparse_round_trip_merges_by_addition() -> None:
    a, b = histogram.new(), histogram.new()
    a[3] = 2
    b[3] = 1
    b[40] = 5
    merged = histogram.new()
    histogram.merge_sparse(merged, histogram.to_sparse(a))
    histogram.merge_sparse(merged, histogram.to_sparse(b))
    assert merged[3] == 3 and merged[40] == 5 and sum(merged) == 8
