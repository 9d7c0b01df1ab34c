"""A tick costs what changed, not the farm's size (issue 12.3): the store says which nodes
were written since a version, the fake driver says when its listing may have changed, the
health monitor checks simulated nodes from one timer and says whose health moved, and a
controller at rest neither lists unchanged hosts nor asks reconcile again. In process: fake
hosts only, no process, no socket."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farmhand.controller import loop
from farmhand.controller.decide import reconcile
from farmhand.controller.decide.actions import Action
from farmhand.controller.health import CheckTarget, HealthMonitor
from farmhand.controller.loop import Controller
from farmhand.drivers import fake, make_driver
from farmhand.drivers.base import NodeLaunch, RunningNode
from farmhand.drivers.fake import FakeDriver
from farmhand.records import Health, NodeRecord, NodeState, RoleState
from farmhand.spec import load_farm, parse_farm
from farmhand.spec.models import HealthSpec
from farmhand.store import SqliteStore
from farmhand.store import sqlite as sqlite_store
from farmhand.store.statedir import StateDir


@pytest.fixture
def farm_id() -> Iterator[str]:
    name = f"tick-{uuid.uuid4().hex[:8]}"
    yield name
    fake.forget(name)


def fake_driver(farm_id: str, host: str = "sim-1") -> FakeDriver:
    spec = parse_farm('[hosts.sim]\ndriver = "fake"\ncount = 2\n')
    driver = make_driver(host, spec.hosts[host], Path("/nonexistent"), farm_id)
    assert isinstance(driver, FakeDriver)
    return driver


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def test_the_store_says_which_nodes_changed_since_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "farm.db")
    start = store.version
    assert store.changed_since(start) == []
    store.put_node(NodeRecord("web-1", "web", "a", NodeState.PENDING, "f", 1.0, 1.0))
    store.put_node(NodeRecord("web-2", "web", "b", NodeState.PENDING, "f", 1.0, 1.0))
    middle = store.version
    store.put_role(RoleState("web", wanted=2))  # a role is no node
    store.delete_node("web-1")
    assert store.changed_since(start) == [("web-1", "a"), ("web-2", "b"), ("web-1", "a")]
    assert store.changed_since(middle) == [("web-1", "a")]
    assert store.changed_since(store.version) == []

    monkeypatch.setattr(sqlite_store, "CHANGE_LOG_MIN", 4)  # a short log forgets its oldest half
    for at in range(10):  # more than twice as many writes as there are nodes
        store.put_node(NodeRecord("web-3", "web", "c", NodeState.PENDING, "f", 1.0, float(at)))
    assert store.changed_since(start) is None, "too old to say: the reader reads every node"
    assert store.changed_since(store.version - 1) == [("web-3", "c")]
    store.close()


async def test_the_fake_listing_mark_moves_only_when_the_listing_would(farm_id: str) -> None:
    driver = fake_driver(farm_id)
    empty = driver.listing_mark()
    assert empty is not None and driver.listing_mark() == empty
    node = await driver.start(NodeLaunch("web-1", "web", "app", port=20_000))
    started = driver.listing_mark()
    assert started != empty
    await driver.list()
    await driver.signal(RunningNode("web-1", node.pid, node.started_at), "HUP")  # survived: nothing new
    assert driver.listing_mark() == started

    fake.world(farm_id).crash("web-1")
    crashed = driver.listing_mark()
    assert crashed != started
    assert not (await driver.list())["web-1"].alive
    assert driver.listing_mark() != crashed, "a dead node reported once leaves the listing: a change"

    fake.world(farm_id).cut("sim-1")
    assert driver.listing_mark() is None, "a host that is cut off is asked (and fails) every time"


def target(driver: FakeDriver, node_id: str, pid: int) -> CheckTarget:
    spec = HealthSpec.model_validate({"type": "http", "interval": "100ms", "fall": 1, "rise": 1, "start_grace": "0s"})
    return CheckTarget(node_id, pid, driver.address, 20_000, spec, 0.0, driver)


async def test_simulated_nodes_are_checked_from_one_timer_and_changes_are_told(farm_id: str) -> None:
    driver = fake_driver(farm_id)
    pids = {}
    for node_id in ("web-1", "web-2"):
        pids[node_id] = (await driver.start(NodeLaunch(node_id, "web", "app", port=None))).pid
    woken: list[int] = []
    monitor = HealthMonitor(lambda: woken.append(1), lambda: 1_000.0)
    try:
        monitor.sync({node_id: target(driver, node_id, pid) for node_id, pid in pids.items()})
        assert "tasks: 0" in repr(monitor), "no task per simulated node"
        await until(lambda: all(monitor.state(n).status == Health.HEALTHY for n in pids), "both healthy")
        assert monitor.changed() == {"web-1", "web-2"} and woken
        await until(lambda: monitor.state("web-1").checks >= 3, "more checks")
        assert monitor.changed() == set(), "passing again moves nothing"

        fake.world(farm_id).set_sick("web-2")
        await until(lambda: monitor.state("web-2").status == Health.UNHEALTHY, "web-2 unhealthy")
        assert "web-2" in monitor.changed()
        assert "made sick" in monitor.state("web-2").detail

        monitor.update({"web-2": None})  # no longer checked: its state is gone, the other goes on
        assert monitor.state("web-2").checks == 0 and "web-2" in monitor.changed()
        checks = monitor.state("web-1").checks
        await until(lambda: monitor.state("web-1").checks > checks, "web-1 still checked")
        same = target(driver, "web-1", pids["web-1"])
        monitor.update({"web-1": same})  # an equal target keeps its state
        assert monitor.state("web-1").status == Health.HEALTHY
    finally:
        await monitor.close()


FARM = textwrap.dedent("""\
    [farm]
    name = "quiet"
    tick = "50ms"
    [hosts.sim]
    driver = "fake"
    count = 4
    capacity = { nodes = 2 }
    [roles.web]
    command = "app --port {port}"
    count = 8
    health = { type = "http", interval = "100ms", fall = 1, start_grace = "0s" }
    """)


class CountingDriver(FakeDriver):
    listed: dict[str, int] = {}

    async def list(self) -> dict[str, RunningNode]:
        self.listed[self.name] = self.listed.get(self.name, 0) + 1
        return await super().list()


@pytest.fixture
async def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Controller, fake.FakeWorld]]:
    monkeypatch.setattr(loop, "make_driver", lambda name, spec, state, farm_id: CountingDriver(name, spec, state, farm_id))
    CountingDriver.listed = {}
    farm_file = tmp_path / "farm.toml"
    farm_file.write_text(FARM)
    state = StateDir.beside(farm_file)
    state.create()
    store = SqliteStore(state.database)
    ctl = Controller(load_farm(farm_file), farm_file, state, store)
    await ctl.start()
    running = asyncio.create_task(ctl.run())
    try:
        yield ctl, fake.world(state.farm_id)
    finally:
        ctl.request_shutdown("test over")
        await asyncio.wait_for(running, 30)
        store.close()
        fake.forget(state.farm_id)


async def test_a_farm_at_rest_lists_no_unchanged_host_and_decides_nothing_again(
        farm: tuple[Controller, fake.FakeWorld], monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, world = farm

    def running() -> list[NodeRecord]:
        return [n for n in ctl.nodes() if n.state == NodeState.RUNNING]

    await until(lambda: len(running()) == 8, "8 nodes running")
    decided: list[int] = []
    real_reconcile = reconcile.reconcile

    def counted_reconcile(*args: Any) -> list[Action]:
        decided.append(1)
        return real_reconcile(*args)

    monkeypatch.setattr(loop, "reconcile", counted_reconcile)
    await until(lambda: decided, "one more reconcile after the last change")
    ticks: list[int] = []
    real_tick = ctl.observer.observe

    async def counted(**kwargs: object) -> object:
        ticks.append(1)
        return await real_tick(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ctl.observer, "observe", counted)
    await until(lambda: len(ticks) >= 3, "ticks at rest")
    listed, decisions = dict(CountingDriver.listed), len(decided)
    await until(lambda: len(ticks) >= 8, "more ticks at rest")
    assert CountingDriver.listed == listed, "no host was listed while nothing changed"
    assert len(decided) == decisions, "reconcile was not asked again"

    victim = running()[0]
    world.crash(victim.id)
    await until(lambda: (n := ctl.node(victim.id)) is not None and n.restarts == 1 and len(running()) == 8,
                "the crashed node restarted and running again")
    assert CountingDriver.listed[victim.host] > listed[victim.host], "its host was listed again"
    assert len(decided) > decisions
