"""Balancing algorithms: weights, exclusions, and consistent hashing's stability."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from farmhand.lb.builtin.balance import (
    LeastConn,
    RoundRobin,
    SourceHash,
    hash64,
    make_balancer,
    smooth_schedule,
)


@dataclass(eq=False)
class B:
    name: str
    weight: int = 1
    active: int = 0


def names(n: int, weight: int = 1) -> list[B]:
    return [B(f"b{i}", weight) for i in range(n)]


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8))
def test_round_robin_serves_each_backend_in_proportion_to_its_weight(weights: list[int]) -> None:
    backends = [B(f"b{i}", w) for i, w in enumerate(weights)]
    balancer = RoundRobin(backends)
    cycle = len(balancer.schedule)
    picks = Counter(balancer.pick(0).name for _ in range(cycle * 3))  # type: ignore[union-attr]
    for backend in backends:
        assert picks[backend.name] * sum(weights) == 3 * cycle * backend.weight


def test_smooth_round_robin_spreads_a_heavy_backend() -> None:
    assert smooth_schedule([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]


def test_round_robin_skips_backends_already_tried_and_gives_up_when_all_were() -> None:
    a, b, c = names(3)
    balancer = RoundRobin([a, b, c])
    assert balancer.pick(0, [a]) in (b, c)
    assert balancer.pick(0, [a, b]) is c
    assert balancer.pick(0, [a, b, c]) is None


def test_weight_zero_is_never_picked() -> None:
    a, b = B("a", 0), B("b", 1)
    for kind in ("roundrobin", "leastconn", "source"):
        balancer = make_balancer(kind, [a, b])
        assert {balancer.pick(k) for k in range(50)} == {b}


def test_no_backend_means_none() -> None:
    for kind in ("roundrobin", "leastconn", "source"):
        assert make_balancer(kind, []).pick(1) is None


def test_least_connections_prefers_the_least_loaded_per_unit_of_weight() -> None:
    a, b, c = B("a", 1, active=3), B("b", 1, active=1), B("c", 4, active=4)
    balancer = LeastConn([a, b, c])
    assert balancer.pick(0) is c  # (4+1)/4 beats (1+1)/1
    assert balancer.pick(0, [c]) is b


def test_least_connections_rotates_between_equals() -> None:
    backends = names(3)
    balancer = LeastConn(backends)
    assert {balancer.pick(0).name for _ in range(3)} == {"b0", "b1", "b2"}  # type: ignore[union-attr]


@given(
    st.integers(min_value=2, max_value=8),
    st.data(),
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=50, max_size=200),
)
def test_source_hashing_moves_only_the_clients_of_a_backend_that_leaves(n: int, data: st.DataObject, keys: list[int]) -> None:
    backends = names(n)
    leaving = data.draw(st.sampled_from(backends))
    before = SourceHash(backends)
    after = SourceHash([b for b in backends if b is not leaving])
    for key in keys:
        old = before.pick(key)
        if old is not leaving:
            assert after.pick(key) is old


def test_source_hashing_is_the_same_in_every_process_and_walks_on_when_tried() -> None:
    backends = names(4)
    key = hash64("192.0.2.7")
    assert key == hash64("192.0.2.7")
    first = SourceHash(backends).pick(key)
    assert SourceHash(list(reversed(backends))).pick(key) is first
    second = SourceHash(backends).pick(key, [first])  # type: ignore[list-item]
    assert second is not None and second is not first
    assert SourceHash(backends).pick(key, backends) is None


def test_source_hashing_spreads_clients() -> None:
    balancer = SourceHash(names(4))
    spread = Counter(balancer.pick(hash64(f"10.0.0.{i}")).name for i in range(2000))  # type: ignore[union-attr]
    assert min(spread.values()) > 300
