"""The gate's backends: the wanted set from the controller, round-robin order, and the
connections in flight to each.

Pure bookkeeping (no sockets). The controller always sends the whole wanted set; ``drain``
backends and ones left out get no new clients, but their connections in flight are still
counted until they end, so the controller can wait for zero before stopping a node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from farmhand.dataplane import Backend

FAILURE_PENALTY = 5.0
"""Seconds a backend that refused a connection is tried last (passive health, like HAProxy's
``observe layer4 on-error mark-down``): the controller's checks decide for good."""


class BackendPool:
    """Round-robin over ready backends (a weight of N takes N turns in a cycle)."""

    def __init__(self) -> None:
        self._down_until: dict[str, float] = {}
        self._backends: dict[str, Backend] = {}
        self._turns: list[str] = []
        self._next = 0
        self._active: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._relayed: dict[str, int] = {}

    def __repr__(self) -> str:
        ready = sum(1 for b in self._backends.values() if b.state == "ready")
        return f"<BackendPool [{ready} ready | {len(self._backends) - ready} drain | {sum(self._active.values())} active]>"

    def set(self, backends: Iterable[Backend]) -> None:
        """Serve exactly ``backends`` from now on."""
        self._backends = {b.name: b for b in backends}
        self._turns = [b.name for b in self._backends.values() if b.state == "ready" for _ in range(max(0, b.weight))]
        self._next = self._next % len(self._turns) if self._turns else 0
        for table in (self._failures, self._down_until):
            for name in [n for n in table if n not in self._backends]:
                del table[name]

    def candidates(self, now: float) -> list[Backend]:
        """Ready backends in the order to try them for one client: the next in turn first,
        each at most once, so a refusing backend is retried elsewhere; backends that
        refused lately come last."""
        count = len(self._turns)
        if not count:
            return []
        healthy = [p for p in range(count) if self._down_until.get(self._turns[p], 0.0) <= now]
        start = min(healthy, key=lambda p: (p - self._next) % count) if healthy else self._next % count
        self._next = (start + 1) % count
        order: list[Backend] = []
        late: list[Backend] = []
        for offset in range(count):
            backend = self._backends[self._turns[(start + offset) % count]]
            if backend not in order and backend not in late:
                (order if self._down_until.get(backend.name, 0.0) <= now else late).append(backend)
        return order + late

    def opened(self, name: str) -> None:
        self._active[name] = self._active.get(name, 0) + 1
        self._relayed[name] = self._relayed.get(name, 0) + 1

    def closed(self, name: str) -> None:
        left = self._active.get(name, 0) - 1
        if left > 0:
            self._active[name] = left
        else:
            self._active.pop(name, None)

    def failed(self, name: str, now: float) -> None:
        """``name`` refused a connection: try it last for a while, and move the turn on so
        the backend that takes this client over does not also get the next one."""
        self._failures[name] = self._failures.get(name, 0) + 1
        self._down_until[name] = now + FAILURE_PENALTY
        if self._turns:
            self._next = (self._next + 1) % len(self._turns)

    def active(self, name: str) -> int:
        return self._active.get(name, 0)

    def total_active(self) -> int:
        return sum(self._active.values())

    def to_json(self) -> dict[str, Any]:
        names = list(self._backends) + [n for n in self._active if n not in self._backends]
        return {
            name: {
                "state": self._backends[name].state if name in self._backends else "removed",
                "address": f"{self._backends[name].host}:{self._backends[name].port}" if name in self._backends else None,
                "active": self.active(name),
                "relayed": self._relayed.get(name, 0),
                "connect_failures": self._failures.get(name, 0),
            }
            for name in names
        }
