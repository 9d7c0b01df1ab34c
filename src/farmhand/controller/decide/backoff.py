"""Exponential restart backoff for roles whose nodes fail right after starting."""

from __future__ import annotations


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait before the next start after ``failures`` early failures in a row.

    The first failure waits ``base``; each further one doubles it, never past ``cap``.
    No failures, no wait.
    """
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(failures - 1, 32))))
