"""A worker's backend table: diffing the wanted set, drain, retirement, ejection."""

from __future__ import annotations

from typing import Any

from farmhand.lb.builtin.table import DRAIN, READY, RETIRED, BackendTable


class Conn:
    def __init__(self) -> None:
        self.closed = False
        self.aborted = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def rec(name: str, port: int = 1, state: str = "ready", weight: int = 1) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "state": state, "weight": weight}


def usable(table: BackendTable) -> set[str]:
    return {s.name for s in table.balancer.candidates}


def test_apply_adds_drains_and_retires() -> None:
    table = BackendTable("roundrobin")
    table.apply([rec("a"), rec("b"), rec("c")], [], now=0)
    assert usable(table) == {"a", "b", "c"}
    idle = Conn()
    table.slots["b"].idle.append(idle)
    table.apply([rec("a"), rec("b", state="drain")], [], now=1)
    assert usable(table) == {"a"}
    assert table.slots["b"].state == DRAIN and idle.closed
    assert [s.name for s in table.retiring] == ["c"] and table.retiring[0].state == RETIRED


def test_a_retired_backend_finishes_its_work_then_folds_into_the_totals() -> None:
    table = BackendTable("roundrobin")
    table.apply([rec("a")], [], now=0)
    slot = table.slots["a"]
    slot.requests = 7
    slot.active = 1
    table.apply([], [], now=1)
    assert table.active("a") == 1
    table.sweep(now=2, drain_timeout=30)
    assert table.retiring == [slot]
    slot.active = 0
    table.sweep(now=3, drain_timeout=30)
    assert table.retiring == [] and table.retired.requests == 7


def test_connections_outliving_the_drain_timeout_are_cut() -> None:
    table = BackendTable("roundrobin")
    table.apply([rec("a")], [], now=0)
    conn = Conn()
    table.slots["a"].conns.add(conn)
    table.apply([], [], now=0)
    table.sweep(now=5, drain_timeout=10)
    assert not conn.aborted
    table.sweep(now=11, drain_timeout=10)
    assert conn.aborted


def test_a_new_address_under_the_same_name_is_a_new_backend() -> None:
    table = BackendTable("roundrobin")
    table.apply([rec("a", port=1)], [], now=0)
    old = table.slots["a"]
    old.active = 1
    table.apply([rec("a", port=2)], [], now=1)
    assert table.slots["a"] is not old and table.slots["a"].port == 2
    assert table.retiring == [old]
    assert table.active("a") == 1


def test_ejection_and_readmission() -> None:
    calls: list[int] = []
    table = BackendTable("leastconn", on_usable=lambda: calls.append(1))
    table.apply([rec("a"), rec("b")], ["b"], now=0)
    assert usable(table) == {"a"}
    assert table.set_ejected("a", True) is not None
    assert usable(table) == set()
    assert table.set_ejected("a", True) is None  # no change, no rebuild
    table.set_ejected("b", False)
    assert usable(table) == {"b"}
    assert calls  # queued requests get served once a backend is usable


def test_weights_and_states_update_in_place() -> None:
    table = BackendTable("roundrobin")
    table.apply([rec("a")], [], now=0)
    slot = table.slots["a"]
    table.apply([rec("a", weight=5)], [], now=1)
    assert table.slots["a"] is slot and slot.weight == 5 and slot.state == READY
    stats = table.to_json()
    assert stats["backends"]["a"]["weight"] == 5
