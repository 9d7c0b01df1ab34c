"""What the controller needs from any data plane in front of a role (load balancer or gate).

Engines (the builtin proxy, HAProxy, the SMTP gate) run as their own processes; the classes
that implement ``DataPlane`` are the controller-side handles that start, adopt and steer them.
The controller always sends the *whole* wanted set of backends: engines compare it with what
they have, so a lost or repeated message cannot leave them in a wrong state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

BackendState = Literal["ready", "drain"]


@dataclass(frozen=True)
class Backend:
    """One node as a data plane sees it. ``name`` is the node id."""

    name: str
    host: str
    port: int
    weight: int = 1
    state: BackendState = "ready"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backend:
        return cls(
            name=str(data["name"]),
            host=str(data["host"]),
            port=int(data["port"]),
            weight=int(data.get("weight", 1)),
            state=data.get("state", "ready"),
        )


class DataPlane(Protocol):
    """Controller-side handle of one role's data plane."""

    async def ensure_running(self) -> bool:
        """Start the engine's processes, or adopt them when they already run (after a
        controller restart): never a second copy, never a dropped connection. True when it
        adopted a running engine, so the controller says "adopted" rather than "started"."""
        ...

    async def set_backends(self, backends: list[Backend]) -> None:
        """Make the engine serve exactly these backends. ``drain`` ones get no new requests
        or connections; ones left out are removed once they have nothing in flight."""
        ...

    async def active(self, name: str) -> int:
        """Requests (http) or connections (tcp) in flight to backend ``name`` now."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Counters per listener and backend, JSON-shaped (see the engine's docs)."""
        ...

    async def stop(self) -> None:
        """Stop the engine's processes (the farm is going down)."""
        ...


# What a data plane's stats() answers, parsed once at the boundary (controller/planes.py) into
# typed records; everyone else reads these instead of re-parsing JSON. Parsing is forgiving
# (an engine of another version, a missing field): what cannot be read is None or empty.

@dataclass(frozen=True)
class Latency:
    count: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    buckets_ms: tuple[tuple[float, int], ...] = ()
    approx: bool = False


@dataclass(frozen=True)
class Counters:
    """One listener's or backend's counters (see farmhand/lb/__init__.py for their meaning)."""

    connections: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0
    retries: int = 0
    active: int = 0
    latency: Latency = Latency()


@dataclass(frozen=True)
class BackendStats:
    counters: Counters
    host: str = ""
    port: int | None = None
    weight: int | None = None
    state: str = ""
    ejected: bool | None = None


@dataclass(frozen=True)
class WorkerDeath:
    """A builtin engine worker that died (and was started again by its supervisor)."""

    worker: int
    pid: int
    how: str
    connections: int | None
    at: float

    @property
    def key(self) -> tuple[int, float]:
        return self.pid, self.at


@dataclass(frozen=True)
class PlaneStats:
    """One data plane's stats: the role-level figures autoscaling reads, per listener and
    backend counters, the engine's own health, and ``raw`` (the JSON as the engine sent it,
    which `status --json` passes on unchanged as ``lb_stats``)."""

    engine: str = ""
    requests_per_s: float | None = None
    active_connections: float | None = None
    p95_ms: float | None = None
    waiting: float | None = None
    listeners: Mapping[str, Counters] = field(default_factory=dict)
    backends: Mapping[str, BackendStats] = field(default_factory=dict)
    worker_restarts: int = 0
    worker_deaths: tuple[WorkerDeath, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> PlaneStats:
        if not isinstance(data, dict):
            return cls()
        return cls(
            engine=str(data.get("engine") or ""),
            requests_per_s=_number(data.get("requests_per_s")),
            active_connections=_number(data.get("active_connections")),
            p95_ms=_number(data.get("p95_ms")),
            waiting=_number(data.get("waiting")),
            listeners={str(k): _counters(v) for k, v in _table(data.get("listeners")).items()},
            backends={str(k): _backend(v) for k, v in _table(data.get("backends")).items()},
            worker_restarts=_int(data.get("worker_restarts")),
            worker_deaths=tuple(d for d in map(_death, _list(data.get("worker_deaths"))) if d is not None),
            raw=data,
        )

    @property
    def requests_total(self) -> int | None:
        """Requests answered over all listeners (None when the engine gives no counters)."""
        return sum(c.requests for c in self.listeners.values()) if self.listeners else None

    def in_flight(self, backend: str) -> int | None:
        found = self.backends.get(backend)
        return found.counters.active if found is not None else None

    @property
    def busy(self) -> float:
        """Requests in flight on every backend plus those waiting for one."""
        return sum(b.counters.active for b in self.backends.values()) + (self.waiting or 0.0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def _table(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _latency(value: Any) -> Latency:
    data = _table(value)
    buckets = tuple((float(b[0]), int(b[1])) for b in _list(data.get("buckets_ms"))
                    if isinstance(b, (list, tuple)) and len(b) == 2 and _number(b[0]) is not None
                    and _number(b[1]) is not None)
    return Latency(_int(data.get("count")), _number(data.get("p50_ms")), _number(data.get("p95_ms")),
                   _number(data.get("p99_ms")), buckets, bool(data.get("approx")))


def _counters(value: Any) -> Counters:
    data = _table(value)
    return Counters(connections=_int(data.get("connections")), requests=_int(data.get("requests")),
                    bytes_in=_int(data.get("bytes_in")), bytes_out=_int(data.get("bytes_out")),
                    errors=_int(data.get("errors")), retries=_int(data.get("retries")),
                    active=_int(data.get("active")), latency=_latency(data.get("latency")))


def _backend(value: Any) -> BackendStats:
    data = _table(value)
    port, weight = _number(data.get("port")), _number(data.get("weight"))
    ejected = data.get("ejected")
    return BackendStats(_counters(data), str(data.get("host") or ""), int(port) if port is not None else None,
                        int(weight) if weight is not None else None, str(data.get("state") or ""),
                        ejected if isinstance(ejected, bool) else None)


def _death(value: Any) -> WorkerDeath | None:
    data = _table(value)
    pid, at = _number(data.get("pid")), _number(data.get("at"))
    if pid is None or at is None:
        return None
    connections = _number(data.get("connections"))
    return WorkerDeath(_int(data.get("worker")), int(pid), str(data.get("how") or "died"),
                       int(connections) if connections is not None else None, at)
