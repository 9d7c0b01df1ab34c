"""Summing the builtin engine's per-worker counters into the ``stats()`` answer.

Workers send raw counters and sparse histograms (see ``table.Counters.to_json``); the
supervisor adds them up here and turns histograms into p50/p95/p99. The role-level latency
(``p95_ms``) is taken over a recent window (``Window``: the difference between now and the
snapshot from about ``WINDOW`` seconds before), because an all-time percentile would never
move again after a day of traffic, and autoscaling wants to see load *now*.

A worker that dies takes its counters with it, and its replacement starts from zero; the
supervisor keeps each worker's last answer and folds a dead worker's into ``Retired``, which
``merge`` adds back, so the engine's totals never go backwards while it lives (issue 10 #20).
What a worker counted after its last answer is lost with it (the controller asks every tick).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from farmhand.lb.builtin import histogram
from farmhand.lb.settings import EngineSettings

COUNTERS = ("connections", "requests", "bytes_in", "bytes_out", "errors", "retries", "active")
WINDOW = 10.0


class Window:
    """Snapshots of the listener histogram, to report latency over the last ``WINDOW`` s."""

    def __init__(self) -> None:
        self.snapshots: deque[tuple[float, list[int]]] = deque(maxlen=256)

    def recent(self, counts: list[int], now: float | None = None) -> list[int]:
        now = time.monotonic() if now is None else now
        base: list[int] | None = None
        for taken, snapshot in self.snapshots:
            if now - taken >= WINDOW:
                base = snapshot
            else:
                break
        while len(self.snapshots) > 1 and now - self.snapshots[1][0] >= WINDOW:
            self.snapshots.popleft()
        self.snapshots.append((now, list(counts)))
        if base is None:
            return counts
        # A restarted worker starts from zero again, so a bucket can go down: clamp at 0.
        return [max(0, c - b) for c, b in zip(counts, base, strict=True)]


def _empty() -> dict[str, Any]:
    return {key: 0 for key in COUNTERS} | {"hist": histogram.new()}


def _add(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key in COUNTERS:
        into[key] += int(part.get(key, 0))
    histogram.merge_sparse(into["hist"], part.get("hist", {}))


def _add_totals(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Like ``_add`` for a dense-histogram record, without ``active`` (nothing in flight)."""
    for key in COUNTERS:
        if key != "active":
            into[key] += int(part[key])
    histogram.add(into["hist"], part["hist"])


class Retired:
    """What workers that died had counted, by their last answer (listener and backends)."""

    def __init__(self) -> None:
        self.listener = _empty()
        self.backends: dict[str, dict[str, Any]] = {}

    def fold(self, answer: dict[str, Any]) -> None:
        """Keep a dead worker's last stats answer (``active`` left out: it is gone)."""
        part = _empty()
        _add(part, answer["listener"])
        _add_totals(self.listener, part)
        for name, counters in answer.get("backends", {}).items():
            part = _empty()
            _add(part, counters)
            _add_totals(self.backends.setdefault(name, _empty()), part)


def _finish(totals: dict[str, Any]) -> dict[str, Any]:
    hist = totals.pop("hist")
    totals["latency"] = histogram.summary(hist)
    return totals


def merge(
    settings: EngineSettings,
    listen: str,
    answers: Iterable[dict[str, Any]],
    ejected: set[str],
    window: Window,
    retired: Retired | None = None,
) -> dict[str, Any]:
    """One engine-wide stats answer from the workers' answers (keys: see ``farmhand.lb``),
    plus what dead workers had counted (``retired``)."""
    listener = _empty()
    backends: dict[str, dict[str, Any]] = {}
    waiting = 0
    rate = 0.0
    workers = 0
    for answer in answers:
        workers += 1
        _add(listener, answer["listener"])
        waiting += int(answer.get("waiting", 0))
        rate += float(answer.get("requests_per_s", 0.0))
        for name, part in answer["backends"].items():
            record = backends.get(name)
            if record is None:
                record = backends[name] = _empty() | {
                    "host": part["host"], "port": part["port"], "weight": part["weight"],
                    "state": part["state"], "ejected": name in ejected,
                }
            _add(record, part)
    if retired is not None:
        _add_totals(listener, retired.listener)
        for name, record in backends.items():
            if name in retired.backends:
                _add_totals(record, retired.backends[name])
    recent = window.recent(listener["hist"])
    p95 = histogram.percentile(recent, 0.95)
    return {
        "engine": "builtin",
        "role": settings.role,
        "mode": settings.mode,
        "listen": listen,
        "workers": workers,
        "requests_per_s": round(rate, 2),
        "active_connections": listener["active"],
        "p95_ms": None if p95 is None else round(p95 * 1000, 3),
        "waiting": waiting,
        "listeners": {listen: _finish(listener)},
        "backends": {name: _finish(record) for name, record in sorted(backends.items())},
    }
