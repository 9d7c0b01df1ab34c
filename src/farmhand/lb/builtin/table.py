"""One worker's view of its backends: state, keep-alive pool, counters, and the balancer.

The controller always sends the whole wanted set; ``BackendTable.apply`` compares it with
what the worker has. A backend left out is *retired*: it takes no new work, its idle
connections close, its in-flight work finishes, and once nothing is left (or
``drain_timeout`` passed, when its last connections are cut) it is dropped and its counters
are folded into ``retired`` so totals never go backwards.

The balancer is rebuilt only when the usable set changes (added, drained, ejected,
readmitted, weight changed), so picking stays one list lookup on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from farmhand.lb.builtin import histogram
from farmhand.lb.builtin.balance import Balancer, make_balancer

READY = "ready"
DRAIN = "drain"
RETIRED = "removed"


class Closable(Protocol):
    def close(self) -> None: ...

    def abort(self) -> None: ...


class Counters:
    """Counters shared by listeners and backends (plain attributes: cheapest to bump)."""

    __slots__ = ("connections", "requests", "bytes_in", "bytes_out", "errors", "retries", "active", "hist")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.errors = 0
        self.retries = 0
        self.active = 0
        self.hist = histogram.new()

    def to_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "errors": self.errors,
            "retries": self.retries,
            "active": self.active,
            "hist": histogram.to_sparse(self.hist),
        }

    def fold(self, other: Counters) -> None:
        """Add another's totals (not ``active``: what is retired is no longer in flight)."""
        self.connections += other.connections
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.errors += other.errors
        self.retries += other.retries
        histogram.add(self.hist, other.hist)


class Slot(Counters):
    """One backend in one worker."""

    __slots__ = ("name", "host", "port", "weight", "state", "ejected", "idle", "conns", "retired_at")

    def __init__(self, name: str, host: str, port: int, weight: int, state: str) -> None:
        super().__init__()
        self.name = name
        self.host = host
        self.port = port
        self.weight = weight
        self.state = state
        self.ejected = False
        self.idle: list[Any] = []
        """Keep-alive connections ready for reuse; the most recent is reused first."""
        self.conns: set[Any] = set()
        """Every open connection to this backend (to cut them after a drain timeout)."""
        self.retired_at: float | None = None

    @property
    def usable(self) -> bool:
        return self.state == READY and not self.ejected and self.weight > 0

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        for conn in self.conns:  # tcp relays count their bytes and fold them in at close
            relayed = getattr(conn, "relayed", None)
            if relayed is not None:
                sent, received = relayed()
                data["bytes_in"] += sent
                data["bytes_out"] += received
        data.update(
            host=self.host, port=self.port, weight=self.weight, state=self.state, ejected=self.ejected
        )
        return data

    def __repr__(self) -> str:
        flags = " ejected" if self.ejected else ""
        return f"<Slot {self.name} {self.host}:{self.port} {self.state}{flags} active={self.active}>"


class BackendTable:
    """The backends of one worker and the balancer over the usable ones."""

    def __init__(self, balance: str, on_usable: Callable[[], None] | None = None) -> None:
        self.balance = balance
        self.slots: dict[str, Slot] = {}
        self.retiring: list[Slot] = []
        self.retired = Counters()
        self.balancer: Balancer[Slot] = make_balancer(balance, [])
        self.on_usable = on_usable
        """Called after a rebuild that left usable backends (to serve queued requests)."""

    def rebuild(self) -> None:
        self.balancer = make_balancer(self.balance, [s for s in self.slots.values() if s.usable])
        if self.on_usable is not None and len(self.balancer):
            self.on_usable()

    def set_balance(self, balance: str) -> None:
        if balance != self.balance:
            self.balance = balance
            self.rebuild()

    def apply(self, wanted: Iterable[dict[str, Any]], ejected: Iterable[str], now: float) -> None:
        """Make the table serve exactly ``wanted`` (backend JSON records); see module doc."""
        seen: set[str] = set()
        for record in wanted:
            name = str(record["name"])
            host, port = str(record["host"]), int(record["port"])
            weight = int(record.get("weight", 1))
            state = DRAIN if record.get("state") == DRAIN else READY
            seen.add(name)
            slot = self.slots.get(name)
            if slot is not None and (slot.host, slot.port) != (host, port):
                self._retire(self.slots.pop(name), now)
                slot = None
            if slot is None:
                self.slots[name] = Slot(name, host, port, weight, state)
                continue
            slot.weight = weight
            if state != slot.state:
                slot.state = state
                if state != READY:
                    slot.close_idle()
        for name in [n for n in self.slots if n not in seen]:
            self._retire(self.slots.pop(name), now)
        ejected_names = set(ejected)
        for slot in self.slots.values():
            slot.ejected = slot.name in ejected_names
            if slot.ejected:
                slot.close_idle()
        self.rebuild()

    def _retire(self, slot: Slot, now: float) -> None:
        slot.state = RETIRED
        slot.retired_at = now
        slot.close_idle()
        self.retiring.append(slot)

    def set_ejected(self, name: str, ejected: bool) -> Slot | None:
        """Eject or readmit by name; returns the slot when its state changed."""
        slot = self.slots.get(name)
        if slot is None or slot.ejected == ejected:
            return None
        slot.ejected = ejected
        if ejected:
            slot.close_idle()
        self.rebuild()
        return slot

    def sweep(self, now: float, drain_timeout: float) -> None:
        """Drop retired backends that have finished; cut those past the drain timeout."""
        if not self.retiring:
            return
        keep: list[Slot] = []
        for slot in self.retiring:
            if not slot.conns and not slot.active:
                self.retired.fold(slot)
                continue
            if slot.retired_at is not None and now - slot.retired_at > drain_timeout:
                for conn in list(slot.conns):
                    conn.abort()
            keep.append(slot)
        self.retiring = keep

    def active(self, name: str) -> int:
        """In flight to ``name``, counting a retired copy still finishing its work."""
        total = sum(s.active for s in self.retiring if s.name == name)
        slot = self.slots.get(name)
        return total + (slot.active if slot is not None else 0)

    def to_json(self) -> dict[str, Any]:
        backends: dict[str, Any] = {name: slot.to_json() for name, slot in self.slots.items()}
        for slot in self.retiring:
            record = slot.to_json()
            if slot.name in backends:  # a re-added name: report both under the live one
                live = backends[slot.name]
                for key in ("connections", "requests", "bytes_in", "bytes_out", "errors", "retries", "active"):
                    live[key] += record[key]
                merged = histogram.new()
                histogram.merge_sparse(merged, live["hist"])
                histogram.merge_sparse(merged, record["hist"])
                live["hist"] = histogram.to_sparse(merged)
            else:
                backends[slot.name] = record
        return {"backends": backends, "retired": self.retired.to_json()}
