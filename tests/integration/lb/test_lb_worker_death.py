"""Issue 10 #17, #19, #20: kill -9 of one builtin worker under traffic.

The supervisor starts a new worker (a new pid appears and the listener serves again), the
death is visible in stats (``worker_restarts`` and ``worker_deaths``, with the signal), and
no total goes backwards: the dead worker's last counts are kept. Requests in flight on the
killed worker may fail (the documented limit of kill -9), so no failure count is asserted.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lb_harness import Backends, HttpLoad, engine_pids, wait_for
from test_lb_lifecycle import ping, worker_pids

from farmhand.dataplane import Backend

pytestmark = pytest.mark.slow


def totals(stats: dict[str, Any]) -> dict[str, int]:
    listener = stats["listeners"][stats["listen"]]
    found = {f"listener {key}": int(listener[key]) for key in ("connections", "requests", "bytes_in", "bytes_out")}
    found["listener latency count"] = int(listener["latency"]["count"])
    for name, backend in stats["backends"].items():
        for key in ("connections", "requests", "bytes_in", "bytes_out"):
            found[f"{name} {key}"] = int(backend[key])
    return found


def never_lower(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [f"{key}: {value} -> {after.get(key)}" for key, value in before.items() if after.get(key, -1) < value]


async def test_a_killed_worker_is_replaced_counted_and_its_counts_kept(
    plane_factory: Callable[..., Any], backends_factory: Callable[[str], Backends], short_tmp: Path
) -> None:
    run_dir = short_tmp / "lb" / "web"
    nodes = await backends_factory("http").start(2)
    plane = plane_factory("builtin", "http", workers=2)
    await plane.ensure_running()
    await plane.set_backends([Backend(n.name, "127.0.0.1", n.port) for n in nodes])
    [supervisor] = engine_pids(run_dir, "builtin")
    load = HttpLoad(plane.settings.listen_port, concurrency=4)
    load.start()
    try:
        await load.more(400)
    finally:
        await load.stop()
    # Traffic stopped: whatever the dead worker had counted must still be in the totals.
    before = await plane.stats()
    assert before["worker_restarts"] == 0 and before["worker_deaths"] == []
    assert before["listeners"][before["listen"]]["requests"] >= 400
    victim = sorted(worker_pids(supervisor))[0]
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        now = worker_pids(supervisor)
        return len(now) == 2 and victim not in now and (await ping(run_dir))["workers"] == 2

    await wait_for(replaced, "the supervisor to start a new worker")
    after = await plane.stats()
    assert not never_lower(totals(before), totals(after)), never_lower(totals(before), totals(after))
    assert after["worker_restarts"] >= 1
    death = next(d for d in after["worker_deaths"] if d["pid"] == victim)
    assert death["signal"] == signal.SIGKILL and death["exit_status"] is None
    assert "killed by signal 9" in death["how"]
    assert death["connections"] is not None and death["connections"] >= 0  # stats were asked before

    load = HttpLoad(plane.settings.listen_port, concurrency=4)
    load.start()
    try:
        await load.more(400)  # the listener serves again
    finally:
        stats = await load.stop()
    assert stats.failed == 0, stats.errors[:5]  # nothing was in flight on the killed worker
    later = await plane.stats()
    assert not never_lower(totals(after), totals(later)), never_lower(totals(after), totals(later))
    assert later["worker_restarts"] >= after["worker_restarts"]
