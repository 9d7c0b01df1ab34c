"""What keeps a farm at rest cheap, in its pure parts: /proc parsed as psutil reads it, only the
node metrics a policy reads are asked for, and sampling slows down while nobody reads."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from farmhand.clock import ManualClock
from farmhand.controller import autoscaler as pace
from farmhand.controller.autoscaler import Autoscaler
from farmhand.controller.context import FarmContext
from farmhand.controller.events import EventLog
from farmhand.controller.health import HealthMonitor
from farmhand.controller.metrics import wanted_node_metrics
from farmhand.controller.readings import RoleSample, read_all
from farmhand.drivers import procfs
from farmhand.drivers.base import NodeMetrics
from farmhand.spec import parse_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir

# /proc/PID/stat of a process whose name holds a space and parentheses
STAT = (b"4242 (my (odd) app) S 1 4242 4242 0 -1 4194304 500 0 0 0 "
        b"120 30 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615")


def test_stat_is_read_after_the_last_parenthesis_of_the_name() -> None:
    stat = procfs.parse_stat(STAT)
    assert stat == procfs.ProcStat(state="S", cpu_ticks=150, start_ticks=98765, rss_pages=2048)
    assert not stat.gone


@pytest.mark.parametrize("state", [b"Z", b"X"])
def test_zombies_and_dead_processes_are_gone(state: bytes) -> None:
    stat = procfs.parse_stat(STAT.replace(b") S ", b") " + state + b" "))
    assert stat is not None and stat.gone


@pytest.mark.parametrize("torn", [b"", b"4242 (app", b"4242 (app) S 1 2", b"4242 (app) S 1 2 3 4 5 6 7 8 9 x y"])
def test_a_torn_or_odd_stat_file_reads_as_nothing(torn: bytes) -> None:
    assert procfs.parse_stat(torn) is None


def test_our_own_start_time_is_psutils_create_time() -> None:
    """The local driver compares start times stored by earlier versions (psutil's): same float."""
    reader = procfs.ProcReader()
    stat = reader.stat(os.getpid())
    assert stat is not None
    assert procfs.start_time(stat, reader.boot_time) == psutil.Process().create_time()


def test_boot_time_comes_from_the_btime_line() -> None:
    assert procfs.parse_boot_time(b"cpu  1 2 3\nbtime 1795987847\nprocesses 9\n") == 1795987847.0
    assert procfs.parse_boot_time(b"cpu  1 2 3\n") is None


def test_tcp_tables_give_the_inodes_that_a_process_can_hold() -> None:
    table = (b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
             b"   0: 0100007F:A7A3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 543596 1 0 100\n"
             b"   1: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000fa0 00000000     0        0 0 3 0\n"
             b"   2: 0100007F:1F90 0100007F:C352 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0 20\n")
    assert procfs.parse_tcp_inodes(table) == {543596, 777}, "TIME_WAIT (inode 0) belongs to no process"


@pytest.mark.parametrize(("link", "inode"), [("socket:[12345]", 12345), ("pipe:[12345]", None),
                                             ("/dev/null", None), ("socket:[]", None)])
def test_only_socket_links_name_an_inode(link: str, inode: int | None) -> None:
    assert procfs.socket_inode(link) == inode


def test_cpu_percent_is_cpu_time_over_wall_time_and_zero_the_first_time() -> None:
    ticks = procfs.CLOCK_TICKS
    assert procfs.cpu_percent(None, 10.0, 500) == 0.0
    assert procfs.cpu_percent((10.0, 0), 12.0, ticks) == pytest.approx(50.0)
    assert procfs.cpu_percent((10.0, 0), 11.0, 3 * ticks) == pytest.approx(300.0), "several cores: over 100"
    assert procfs.cpu_percent((10.0, 900), 11.0, 100) == 0.0, "a counter that went back: a new start"


def test_the_cpu_meter_starts_afresh_for_a_recycled_pid_and_forgets_the_gone() -> None:
    meter = procfs.CpuMeter()
    first = procfs.ProcStat("R", 0, 1000, 1)
    meter.percent(7, first, 1.0)
    assert meter.percent(7, procfs.ProcStat("R", procfs.CLOCK_TICKS, 1000, 1), 2.0) == pytest.approx(100.0)
    assert meter.percent(7, procfs.ProcStat("R", 5 * procfs.CLOCK_TICKS, 2000, 1), 3.0) == 0.0, "another process"
    meter.keep_only([])
    assert repr(meter) == "<CpuMeter [processes: 0]>"


FARM = """\
[roles.web]
command = "app --port {port}"
count = 2
[roles.api]
command = "app --port {port}"
min = 1
max = 3
[roles.api.autoscale]
target = [{ metric = "cpu", value = 50 }]
"""


def test_connections_are_wanted_only_while_a_policy_names_them() -> None:
    assert wanted_node_metrics(parse_farm(FARM)) == frozenset()
    named = FARM + 'threshold = [{ metric = "connections", above = 100, for = "1m" }]\n'
    assert wanted_node_metrics(parse_farm(named)) == {"connections"}


def test_unmeasured_connections_are_left_out_not_counted_as_zero() -> None:
    def sample(*measured: NodeMetrics) -> RoleSample:
        return RoleSample(serving=2, nodes=measured, host_loads=(), plane=None, request_rate=None)

    unmeasured = sample(NodeMetrics(10.0, 2_000_000, None), NodeMetrics(30.0, 4_000_000, None))
    assert read_all(unmeasured) == {"cpu": (20.0, 2), "rss_mb": (3.0, 2)}
    some = sample(NodeMetrics(10.0, 2_000_000, 4), NodeMetrics(30.0, 4_000_000, None))
    assert read_all(some)["connections"] == (4.0, 1)


async def no_planes() -> dict[str, Any]:
    return {}


@pytest.fixture
async def scaler(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Autoscaler] = []

    def make(text: str) -> tuple[Autoscaler, ManualClock]:
        clock = ManualClock()
        store = SqliteStore(tmp_path / f"farm{len(made)}.db")
        ctx = FarmContext(parse_farm(text), tmp_path / "farm.toml", StateDir(tmp_path / ".farmhand"), store, clock,
                          EventLog(store, clock), HealthMonitor(lambda: None, clock.now))
        made.append(Autoscaler(ctx, lambda *_: None, lambda: None, no_planes))
        return made[-1], clock

    yield make
    for one in made:
        await one.close()


async def test_sampling_slows_down_while_nobody_reads_metrics(scaler: Any) -> None:
    fixed = FARM.split("[roles.api]")[0]
    autoscaler, clock = scaler(fixed)
    assert autoscaler.interval == pace.IDLE_INTERVAL
    autoscaler.current("web")  # the dashboard's history ring reads by itself: nobody watches
    assert autoscaler.interval == pace.IDLE_INTERVAL
    autoscaler.note_read()  # status or the dashboard's stream, for a person
    assert autoscaler.interval == pace.DEFAULT_INTERVAL
    clock.advance(pace.READ_HOLD - 1)
    autoscaler.note_read()
    clock.advance(pace.READ_HOLD - 1)
    assert autoscaler.interval == pace.DEFAULT_INTERVAL, "each read holds the watched pace"
    clock.advance(2)
    assert autoscaler.interval == pace.IDLE_INTERVAL


async def test_a_role_that_autoscales_sets_the_pace_whoever_reads(scaler: Any) -> None:
    autoscaler, clock = scaler(FARM + 'interval = "3s"\n')
    assert autoscaler.interval == 3.0
    autoscaler.note_read()
    assert autoscaler.interval == 3.0
