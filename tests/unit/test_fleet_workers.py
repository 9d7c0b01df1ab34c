"""How a cold exec's hosts are dealt to worker processes (``fleet.workers``)."""

from __future__ import annotations

import pytest

from farmhand.errors import RequestError
from farmhand.fleet.workers import MIN_HOSTS_PER_WORKER, deal, worker_count


def test_one_worker_per_core_with_enough_hosts_each() -> None:
    assert worker_count(50, 2, None) == 2
    assert worker_count(50, 16, None) == 50 // MIN_HOSTS_PER_WORKER
    assert worker_count(MIN_HOSTS_PER_WORKER * 2 - 1, 4, None) == 1
    assert worker_count(0, 4, None) == 1
    assert worker_count(50, None, None) == 1


def test_the_environment_decides_when_set() -> None:
    assert worker_count(50, 2, "1") == 1
    assert worker_count(10, 2, "4") == 4
    assert worker_count(3, 2, "8") == 3, "never more workers than hosts"
    assert worker_count(50, 2, "") == 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(RequestError, match="FARMHAND_EXEC_WORKERS"):
            worker_count(50, 2, bad)


def test_hosts_are_dealt_round_robin_each_once() -> None:
    hosts = [f"h{i}" for i in range(1, 8)]
    shares = deal(hosts, 3)
    assert shares == [["h1", "h4", "h7"], ["h2", "h5"], ["h3", "h6"]]
    assert sorted(h for share in shares for h in share) == sorted(hosts)
