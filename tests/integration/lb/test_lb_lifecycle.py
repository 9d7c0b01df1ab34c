"""The builtin engine's own life: settings that apply live or need a new engine, and a
worker that dies being started again by its supervisor."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lb_harness import Backends, HttpLoad, engine_pids, wait_for

from farmhand import control_channel
from farmhand.dataplane import Backend

pytestmark = pytest.mark.slow


async def ping(run_dir: Path) -> dict[str, Any]:
    return await control_channel.call(run_dir / "control.sock", {"op": "ping"})


def worker_pids(supervisor: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


async def test_live_settings_are_applied_and_others_start_a_new_engine(
    plane_factory: Callable[..., Any], short_tmp: Path
) -> None:
    run_dir = short_tmp / "lb" / "web"
    first = plane_factory("builtin", "http", workers=1)
    assert await first.ensure_running() is False, "a new engine is started, not adopted"
    pids = engine_pids(run_dir, "builtin")
    changed = plane_factory("builtin", "http", workers=1, balance="leastconn", server_timeout="5s")
    assert await changed.ensure_running() is True, "the running engine is adopted"
    assert engine_pids(run_dir, "builtin") == pids, "a live setting must not restart the engine"
    assert (await ping(run_dir))["fingerprint"] == changed.settings.fingerprint()
    wider = plane_factory("builtin", "http", workers=2)
    assert await wider.ensure_running() is False, "other workers: a new engine"
    assert engine_pids(run_dir, "builtin") != pids
    assert (await ping(run_dir))["workers"] == 2


async def test_a_dead_worker_is_started_again_with_the_current_backends(
    plane_factory: Callable[..., Any], backends_factory: Callable[[str], Backends], short_tmp: Path
) -> None:
    run_dir = short_tmp / "lb" / "web"
    nodes = await backends_factory("http").start(2)
    plane = plane_factory("builtin", "http", workers=2)
    await plane.ensure_running()
    await plane.set_backends([Backend(n.name, "127.0.0.1", n.port) for n in nodes])
    [supervisor] = engine_pids(run_dir, "builtin")
    workers = worker_pids(supervisor)
    assert len(workers) == 2
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        now = worker_pids(supervisor)
        return len(now) == 2 and victim not in now and (await ping(run_dir))["workers"] == 2

    await wait_for(replaced, "the supervisor to start a new worker")
    load = HttpLoad(plane.settings.listen_port, concurrency=4)
    load.start()
    await load.more(200)
    stats = await load.stop()
    assert stats.failed == 0, stats.errors[:5]
    assert set(stats.by_backend) == {n.name for n in nodes}  # the new worker knows both backends
