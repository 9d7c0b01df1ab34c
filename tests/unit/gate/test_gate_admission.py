"""Allowlist, pass cache, backend pool and policy: the gate's pure bookkeeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.clock import ManualClock
from farmhand.dataplane import Backend
from farmhand.gate.admission import Allowlist, PassCache
from farmhand.gate.backends import FAILURE_PENALTY, BackendPool
from farmhand.gate.policy import DelayPolicy, GateUsageError, remaining_delay, verdict_for


def test_allowlist_networks_and_confirmed_names() -> None:
    allow = Allowlist.parse(["192.0.2.0/24", "2001:db8::/32", "198.51.100.7", "example.com", ".partner.test"])
    assert allow.allows_address("192.0.2.200") and allow.allows_address("2001:db8::5")
    assert allow.allows_address("198.51.100.7") and not allow.allows_address("198.51.100.8")
    assert allow.allows_name("example.com") and allow.allows_name("MX1.Example.COM.")
    assert allow.allows_name("mx.partner.test")
    assert not allow.allows_name("notexample.com") and not allow.allows_name(None)


def test_allowlist_refuses_junk() -> None:
    with pytest.raises(GateUsageError, match="neither a CIDR nor a name suffix"):
        Allowlist.parse(["not a name"])


def test_pass_cache_expires_and_stays_bounded() -> None:
    clock = ManualClock()
    cache = PassCache(ttl=60, max_size=2, clock=clock)
    cache.add("192.0.2.1")
    assert cache.fresh("192.0.2.1") and not cache.fresh("192.0.2.2")
    clock.advance(61)
    assert not cache.fresh("192.0.2.1") and len(cache) == 0
    for n in range(5):
        cache.add(f"192.0.2.{n}")
    assert len(cache) == 2 and cache.fresh("192.0.2.4") and not cache.fresh("192.0.2.0")
    assert not PassCache(ttl=0, max_size=10, clock=clock).fresh("x")


def backend(name: str, state: str = "ready", weight: int = 1) -> Backend:
    return Backend(name, "127.0.0.1", 2500, weight, state)  # type: ignore[arg-type]


def test_round_robin_drain_and_weights() -> None:
    pool = BackendPool()
    pool.set([backend("a"), backend("b"), backend("c", "drain")])
    firsts = [pool.candidates(0)[0].name for _ in range(4)]
    assert firsts == ["a", "b", "a", "b"]
    assert [b.name for b in pool.candidates(0)] == ["a", "b"]
    pool.set([backend("a", weight=2), backend("b")])
    assert sorted(pool.candidates(0)[0].name for _ in range(3)) == ["a", "a", "b"]
    pool.set([])
    assert pool.candidates(0) == []


def test_a_refusing_backend_is_tried_last_for_a_while() -> None:
    pool = BackendPool()
    pool.set([backend("dead"), backend("a"), backend("b")])
    assert pool.candidates(0)[0].name == "dead"
    pool.failed("dead", now=0)
    chosen = [pool.candidates(1)[0].name for _ in range(4)]
    assert chosen == ["b", "a", "b", "a"] or chosen == ["a", "b", "a", "b"]
    assert pool.candidates(1)[-1].name == "dead"
    assert "dead" in [pool.candidates(FAILURE_PENALTY + 1)[0].name for _ in range(3)]


def test_active_counts_outlive_removal() -> None:
    pool = BackendPool()
    pool.set([backend("a")])
    pool.opened("a")
    pool.set([])
    assert pool.active("a") == 1 and pool.to_json()["a"]["state"] == "removed"
    pool.closed("a")
    assert pool.active("a") == 0 and pool.to_json() == {}


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["ready", "drain"]), st.integers(0, 3)),
                max_size=6))
def test_candidates_are_ready_distinct_and_weighted(spec: list[tuple[str, str, int]]) -> None:
    pool = BackendPool()
    backends = {name: backend(name, state, weight) for name, state, weight in spec}
    pool.set(backends.values())
    names = [b.name for b in pool.candidates(0)]
    assert len(names) == len(set(names))
    assert set(names) == {n for n, b in backends.items() if b.state == "ready" and b.weight > 0}


def test_policy_replies_and_verdicts() -> None:
    policy = DelayPolicy()
    assert policy.reply().startswith(b"451 4.7.1 ") and policy.rblsmtpd_value()[0] != "-"
    assert [verdict_for(w) for w in ("quiet", "talker", "hangup")] == ["pass", "talker", "hangup"]
    assert remaining_delay(2.0, 0.5) == 1.5 and remaining_delay(2.0, 3.0) == 0.0
    assert DelayPolicy(delays={"static": 31.0}).warnings()
    with pytest.raises(GateUsageError):
        DelayPolicy(delays={"static": 300.0})
