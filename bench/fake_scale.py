"""What the controller costs at size, on fake hosts (nodes simulated in memory).

    .venv/bin/python bench/fake_scale.py [--nodes 2000] [--per-host 20] [--rest 10]
                                         [--storm 0.05] [--profile converge,rest,storm] [--top 20]
                                         [--timeout 600]

A real ``Controller`` (SQLite store, health monitor, reconcile loop) runs in this process
over ``--nodes / --per-host`` fake hosts (``farmhand.drivers.fake``) with an HTTP check every
second (answered by the fake driver without a socket). Phases:

1. converge: from empty to every node running (placement throughput in nodes/s);
2. rest: ``--rest`` seconds with nothing happening (controller CPU, tick durations);
3. storm: ``--storm`` of the nodes crash at once through the fake world; time until all
   have restarted and every node serves again.

Printed per phase: wall time, CPU time of this process (% of one core), ticks and their
p50/p95/max durations (wall time), the CPU time this thread spent between a tick's start and
its end (p50/p95: the tick's own work plus whatever other task the loop ran while the tick
awaited; on a loaded machine it is the steadier figure), the process's CPU divided by the
ticks (everything the controller did, health checks included, per tick), the garbage
collector's pauses (total and the longest: a full collection of a big heap stalls whatever
tick it falls in), RSS. ``--profile`` runs cProfile over the named phases and prints the
``--top`` functions by own time and by cumulative time. The figures are for the next step
(issue 12: cost that grows with change, not with size); the API and CLI are not exercised.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import math
import pstats
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from farmhand.controller.loop import Controller
from farmhand.drivers import fake
from farmhand.records import NodeState
from farmhand.spec import load_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir


def farm_toml(nodes: int, per_host: int) -> str:
    hosts = -(-nodes // per_host)
    return textwrap.dedent(f"""\
        [farm]
        name = "scale"

        [hosts.sim]
        driver = "fake"
        count = {hosts}
        capacity = {{ nodes = {per_host} }}

        [roles.web]
        command = "app --port {{port}}"
        count = {nodes}
        health = {{ type = "http", path = "/health", interval = "1s" }}
        """)


class Phase:
    def __init__(self, name: str, ticks: list[float], tick_cpu: list[float], profile: bool) -> None:
        self.name, self.ticks, self.tick_cpu, self.profile = name, ticks, tick_cpu, profile
        self.profiler = cProfile.Profile() if profile else None

    def __enter__(self) -> Phase:
        self.ticks.clear()
        self.tick_cpu.clear()
        GC_PAUSES.clear()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        if self.profiler:
            self.profiler.enable()
        return self

    def __exit__(self, *_: object) -> None:
        if self.profiler:
            self.profiler.disable()
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def report(self, top: int, extra: str = "") -> None:
        ticks, cpu = sorted(self.ticks), sorted(self.tick_cpu)
        shown = (f"{len(ticks)} ticks, wall p50 {1000 * statistics.median(ticks):.1f} ms, "
                 f"p95 {1000 * _p95(ticks):.1f} ms, max {1000 * ticks[-1]:.1f} ms; "
                 f"tick CPU p50 {1000 * statistics.median(cpu):.1f} ms, p95 {1000 * _p95(cpu):.1f} ms; "
                 f"process CPU per tick {1000 * self.cpu / len(ticks):.1f} ms"
                 if ticks else "no tick")
        rss = psutil.Process().memory_info().rss >> 20
        pauses = (f"GC pauses {1000 * sum(GC_PAUSES):.0f} ms, longest {1000 * max(GC_PAUSES):.0f} ms"
                  if GC_PAUSES else "no GC pause")
        print(f"{self.name}: {self.wall:.2f} s wall, CPU {100 * self.cpu / self.wall:.0f}% of a core; "
              f"{shown}; {pauses}; RSS {rss} MiB{extra}")
        if self.profiler:
            for key in ("tottime", "cumulative"):
                print(f"--- {self.name}: top {top} by {key}")
                pstats.Stats(self.profiler, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(top)


GC_PAUSES: list[float] = []
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_PAUSES.append(time.perf_counter() - _gc_started[0])


def _p95(values: list[float]) -> float:
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


async def wait(probe: Callable[[], bool], what: str, timeout: float = 600,
               progress: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout:g} s {progress()}".rstrip())
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    profiled = set(filter(None, args.profile.split(",")))
    with tempfile.TemporaryDirectory() as folder:
        farm_file = Path(folder) / "farm.toml"
        farm_file.write_text(farm_toml(args.nodes, args.per_host))
        state = StateDir.beside(farm_file)
        state.create()
        store = SqliteStore(state.database)
        ctl = Controller(load_farm(farm_file), farm_file, state, store)
        world = fake.world(state.farm_id)
        ticks: list[float] = []
        tick_cpu: list[float] = []
        tick: Callable[[], Awaitable[None]] = ctl.tick

        async def timed_tick() -> None:
            started, cpu = time.perf_counter(), time.thread_time()
            await tick()
            ticks.append(time.perf_counter() - started)
            tick_cpu.append(time.thread_time() - cpu)

        ctl.tick = timed_tick  # type: ignore[method-assign]

        answer = [-1, False]  # the store's version when last asked, and the answer then

        def serving() -> bool:
            # asked every 50 ms: reads every node only when one changed, so that at 100,000
            # nodes the bench's own probe costs next to nothing beside the controller
            if answer[0] != store.version:
                nodes = store.nodes()
                answer[:] = [store.version, len(nodes) == args.nodes and all(n.state == NodeState.RUNNING for n in nodes)]
            return bool(answer[1])

        try:
            with Phase("converge", ticks, tick_cpu, "converge" in profiled) as converge:
                await ctl.start()
                run = asyncio.create_task(ctl.run())
                await wait(serving, f"{args.nodes} nodes running", args.timeout,
                           lambda: f"({sum(n.state == NodeState.RUNNING for n in store.nodes())} running)")
        except SystemExit as gave_up:
            converge.report(args.top, f"; {gave_up}")
            raise
        converge.report(args.top, f"; {args.nodes / converge.wall:.0f} nodes/s placed and healthy")

        with Phase("rest", ticks, tick_cpu, "rest" in profiled) as rest:
            await asyncio.sleep(args.rest)
        rest.report(args.top)

        victims = [n for n in store.nodes()][:: max(1, round(1 / args.storm))]
        with Phase("storm", ticks, tick_cpu, "storm" in profiled) as storm:
            for node in victims:
                world.crash(node.id)
            await wait(lambda: all((n := store.node(v.id)) is not None and n.restarts >= 1 for v in victims)
                       and serving(), "the storm healed")
        storm.report(args.top, f"; {len(victims)} crashed nodes back")

        ctl.request_shutdown("bench over")
        await run
        store.close()
        fake.forget(state.farm_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--per-host", type=int, default=20)
    parser.add_argument("--rest", type=float, default=10.0)
    parser.add_argument("--storm", type=float, default=0.05)
    parser.add_argument("--profile", default="")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for convergence")
    gc.callbacks.append(_gc_timer)
    asyncio.run(main(parser.parse_args()))
