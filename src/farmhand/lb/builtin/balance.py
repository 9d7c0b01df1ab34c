"""Balancing algorithms: pure, rebuilt whenever the set of usable backends changes.

Each balancer is built from the backends that may take new work now (ready, not ejected,
weight above zero) and answers ``pick(key, tried)`` in O(1) for round robin, O(n) for least
connections and O(log n) for source hashing. ``tried`` holds the backends this request
already failed on, so a retry never lands on the same backend twice (FIELD-NOTES: a proxy
that could pick the dead backend twice failed 1,898 requests).

Rebuilding on change instead of filtering on every pick keeps the hot path to one list
index; changes (a backend added, drained, ejected) are rare next to requests.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Collection, Sequence
from functools import reduce
from typing import Generic, Protocol, TypeVar


class Candidate(Protocol):
    """What a balancer needs to know of a backend."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...

    @property
    def active(self) -> int: ...


C = TypeVar("C", bound=Candidate)

MAX_SCHEDULE = 4096
"""Round-robin schedules longer than this are scaled down (weights keep their ratios)."""
VNODES = 64
"""Points on the hash ring per unit of (reduced) weight."""


class Balancer(Generic[C]):
    """Base: ``pick`` returns a backend not in ``tried``, or None when none is left."""

    def __init__(self, candidates: Sequence[C]) -> None:
        self.candidates = [c for c in candidates if c.weight > 0]

    def pick(self, key: int, tried: Collection[C] | None = None) -> C | None:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.candidates)

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self.candidates)
        return f"<{type(self).__name__} [{names}]>"


def _reduced_weights(weights: Sequence[int], limit: int) -> list[int]:
    """Weights divided by their gcd, then scaled so their sum stays under ``limit``."""
    divisor = reduce(math.gcd, weights)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    if total > limit:
        reduced = [max(1, w * limit // total) for w in reduced]
    return reduced


def smooth_schedule(weights: Sequence[int]) -> list[int]:
    """Nginx's smooth weighted round robin, unrolled: indexes in the order they are served.

    Weights 5,1,1 give 0,0,1,0,2,0,0 rather than 0,0,0,0,0,1,2, so a heavy backend never
    receives a burst.
    """
    if not weights:
        return []
    reduced = _reduced_weights(weights, MAX_SCHEDULE)
    total = sum(reduced)
    current = [0] * len(reduced)
    order: list[int] = []
    for _ in range(total):
        for i, w in enumerate(reduced):
            current[i] += w
        best = max(range(len(reduced)), key=lambda i: current[i])
        current[best] -= total
        order.append(best)
    return order


class RoundRobin(Balancer[C]):
    """Weighted round robin over a precomputed smooth schedule."""

    def __init__(self, candidates: Sequence[C]) -> None:
        super().__init__(candidates)
        self.schedule = [self.candidates[i] for i in smooth_schedule([c.weight for c in self.candidates])]
        self.next = 0

    def pick(self, key: int, tried: Collection[C] | None = None) -> C | None:
        schedule = self.schedule
        size = len(schedule)
        if not size:
            return None
        index = self.next
        for _ in range(size):
            chosen = schedule[index]
            index = index + 1 if index + 1 < size else 0
            if not tried or chosen not in tried:
                self.next = index
                return chosen
        return None


class LeastConn(Balancer[C]):
    """Fewest in-flight requests (or connections) per unit of weight; ties rotate."""

    def __init__(self, candidates: Sequence[C]) -> None:
        super().__init__(candidates)
        self.offset = 0

    def pick(self, key: int, tried: Collection[C] | None = None) -> C | None:
        candidates = self.candidates
        size = len(candidates)
        if not size:
            return None
        start = self.offset
        self.offset = start + 1 if start + 1 < size else 0
        best: C | None = None
        best_load = math.inf
        for step in range(size):
            candidate = candidates[(start + step) % size]
            if tried and candidate in tried:
                continue
            load = (candidate.active + 1) / candidate.weight
            if load < best_load:
                best, best_load = candidate, load
        return best


def hash64(text: str) -> int:
    """A hash that is the same in every process (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class SourceHash(Balancer[C]):
    """Consistent hashing of the client address on a ring of virtual nodes.

    A backend's points depend only on its name, so when it leaves only the clients it held
    move (to the next point on the ring); everyone else stays put. When a client's backend
    was already tried, the walk goes on clockwise to the next distinct backend.
    """

    def __init__(self, candidates: Sequence[C]) -> None:
        super().__init__(candidates)
        reduced = _reduced_weights([c.weight for c in self.candidates], MAX_SCHEDULE) if self.candidates else []
        ring = sorted(
            (hash64(f"{candidate.name}#{v}"), i)
            for i, (candidate, weight) in enumerate(zip(self.candidates, reduced, strict=True))
            for v in range(weight * VNODES)
        )
        self.points = [point for point, _ in ring]
        self.owners = [self.candidates[i] for _, i in ring]

    def pick(self, key: int, tried: Collection[C] | None = None) -> C | None:
        owners = self.owners
        size = len(owners)
        if not size:
            return None
        index = bisect.bisect_left(self.points, key)
        if index == size:
            index = 0
        chosen = owners[index]
        if not tried or chosen not in tried:
            return chosen
        if len(tried) >= len(self.candidates) and all(c in tried for c in self.candidates):
            return None
        for step in range(1, size):
            chosen = owners[(index + step) % size]
            if chosen not in tried:
                return chosen
        return None


def make_balancer(kind: str, candidates: Sequence[C]) -> Balancer[C]:
    """The balancer named in the spec (``roundrobin``, ``leastconn``, ``source``)."""
    if kind == "leastconn":
        return LeastConn(candidates)
    if kind == "source":
        return SourceHash(candidates)
    return RoundRobin(candidates)
