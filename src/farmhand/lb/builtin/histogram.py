"""Latency histograms that cost a few integer operations per request and merge by addition.

Buckets are log-linear: four per power of two of microseconds, so every bucket is at most
25% wide (good enough for p95/p99) and one worker's histogram merges with another's by
adding lists, which is how an engine with several worker processes reports one figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SUB = 4
"""Buckets per power of two."""
OCTAVES = 28
"""Up to 2**28 µs (about 4.5 minutes); slower requests land in the last bucket."""
SIZE = SUB * (OCTAVES - 1)


def bucket_of(seconds: float) -> int:
    """The bucket index of a duration (hot path: no float maths beyond one multiply)."""
    us = int(seconds * 1_000_000.0) + 1
    bits = us.bit_length()
    if bits < 3:
        return us
    index = ((bits - 2) << 2) | ((us >> (bits - 3)) & 3)
    return index if index < SIZE else SIZE - 1


def bucket_bounds(index: int) -> tuple[float, float]:
    """The [lower, upper) bounds of a bucket in seconds."""
    if index < SUB:
        return index / 1e6, (index + 1) / 1e6
    bits = (index >> 2) + 2
    sub = index & 3
    shift = bits - 3
    return ((4 + sub) << shift) / 1e6, ((5 + sub) << shift) / 1e6


def new() -> list[int]:
    return [0] * SIZE


def to_sparse(counts: list[int]) -> dict[str, int]:
    """The non-empty buckets, keyed by index as text (JSON object keys are strings)."""
    return {str(i): c for i, c in enumerate(counts) if c}


def merge_sparse(into: list[int], sparse: Mapping[str, int]) -> None:
    for key, count in sparse.items():
        into[int(key)] += count


def add(into: list[int], other: Iterable[int]) -> None:
    for i, count in enumerate(other):
        into[i] += count


def percentile(counts: list[int], fraction: float) -> float | None:
    """The duration (seconds, bucket midpoint) below which ``fraction`` of samples fall."""
    total = sum(counts)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if count and seen >= rank:
            low, high = bucket_bounds(index)
            return (low + high) / 2
    low, high = bucket_bounds(len(counts) - 1)
    return (low + high) / 2


def summary(counts: list[int]) -> dict[str, object]:
    """The JSON shape of a histogram in ``stats()``: count, p50/p95/p99 in ms, buckets."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "count": sum(counts),
        "p50_ms": ms(percentile(counts, 0.50)),
        "p95_ms": ms(percentile(counts, 0.95)),
        "p99_ms": ms(percentile(counts, 0.99)),
        "buckets_ms": [
            [round(bucket_bounds(i)[1] * 1000, 3), c] for i, c in enumerate(counts) if c
        ],
    }
