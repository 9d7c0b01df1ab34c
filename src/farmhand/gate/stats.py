"""Counters of the gate, per class: plain integers bumped on the hot path, read as JSON by
the control channel and as Prometheus families by ``metrics.py`` only when asked.

Besides the four rDNS classes there are two pseudo-classes for clients that skip the delay:
``allowlisted`` and ``cached`` (the pass cache). A client is counted once as ``seen`` when
its class is known, then once under the verdict it earned: ``passed`` (relayed to a backend),
``early_talkers`` (refused) or ``hung_up``.
"""

from __future__ import annotations

from typing import Any, Literal

from farmhand.gate.policy import Verdict
from farmhand.gate.rdns import CLASSES

StatClass = Literal["static", "dynamic", "mismatch", "no_ptr", "allowlisted", "cached"]
STAT_CLASSES: tuple[StatClass, ...] = (*CLASSES, "allowlisted", "cached")
COUNTERS = ("seen", "passed", "early_talkers", "hung_up")
_COUNTER_OF_VERDICT = {"pass": "passed", "skip": "passed", "talker": "early_talkers", "hangup": "hung_up"}


class GateStats:
    """Every counter the gate keeps. Gauges (held, relaying) are read from the gate itself."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, int]] = {c: dict.fromkeys(COUNTERS, 0) for c in STAT_CLASSES}
        self.accepted = 0
        self.over_capacity = 0
        self.no_backend = 0
        self.connect_failures = 0
        self.lookups = 0
        self.lookup_cache_hits = 0

    def __repr__(self) -> str:
        seen = sum(c["seen"] for c in self.classes.values())
        talkers = sum(c["early_talkers"] for c in self.classes.values())
        return f"<GateStats [accepted {self.accepted} | seen {seen} | early talkers {talkers}]>"

    def seen(self, klass: StatClass) -> None:
        self.classes[klass]["seen"] += 1

    def record(self, klass: StatClass, verdict: Verdict) -> None:
        self.classes[klass][_COUNTER_OF_VERDICT[verdict]] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": {name: dict(counters) for name, counters in self.classes.items()},
            "accepted": self.accepted,
            "over_capacity": self.over_capacity,
            "no_backend": self.no_backend,
            "connect_failures": self.connect_failures,
            "lookups": self.lookups,
            "lookup_cache_hits": self.lookup_cache_hits,
        }
