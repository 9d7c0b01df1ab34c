"""A farm of 2,000 fake nodes, ticked by hand so the invariants are checked after every tick
(issue 12): it converges from empty, survives a 5% crash storm, and scales 2,000 -> 500 ->
2,000, never over max, every node in exactly one place, none lost from the store."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from farmhand.controller.loop import Controller
from farmhand.drivers import fake
from farmhand.records import ACTIVE_STATES, NodeState
from farmhand.spec import load_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir

pytestmark = pytest.mark.slow

FARM = textwrap.dedent("""\
    [farm]
    name = "big"
    [hosts.sim]
    driver = "fake"
    count = 100
    capacity = { nodes = 25 }
    [roles.web]
    command = "app --port {port}"
    min = 100
    max = 2000
    [roles.web.health]
    type = "http"
    interval = "200ms"
    fall = 1
    start_grace = "0s"
    """)
MAX = 2000


class Farm:
    def __init__(self, ctl: Controller, world: fake.FakeWorld) -> None:
        self.ctl, self.world = ctl, world
        self.ticks = 0

    def check_invariants(self) -> None:
        nodes = self.ctl.nodes()
        ids = [n.id for n in nodes]
        assert len(ids) == len(set(ids)), "a node is in the store twice"
        assert all(isinstance(n.state, NodeState) for n in nodes)
        active = [n for n in nodes if n.state in ACTIVE_STATES]
        assert len(active) <= MAX, f"{len(active)} active nodes, over max {MAX}"
        per_host: dict[str, int] = {}
        for node in nodes:
            per_host[node.host] = per_host.get(node.host, 0) + 1
        assert max(per_host.values(), default=0) <= 25, "a host holds more than its capacity"
        known = {(n.host, n.id): n for n in nodes}
        for host in self.world.hosts.values():
            for fake_node in host.nodes.values():
                if fake_node.alive:
                    record = known.get((host.name, fake_node.node_id))
                    assert record is not None, f"{fake_node.node_id} runs on {host.name} but the store lost it"

    def serving(self) -> int:
        return sum(1 for n in self.ctl.nodes() if n.state == NodeState.RUNNING)

    async def tick_until(self, done: Callable[[], bool], what: str, ticks: int = 400) -> None:
        for _ in range(ticks):
            await self.ctl.tick()
            self.ticks += 1
            self.check_invariants()
            if done():
                return
            await asyncio.sleep(0.05)  # the health checks run between ticks
        raise AssertionError(f"not done after {ticks} ticks: {what}")

    def exactly(self, count: int) -> Callable[[], bool]:
        return lambda: self.serving() == count == len(self.ctl.nodes())


async def test_fake_farm_of_2000_nodes_converges_survives_a_storm_and_scales(tmp_path: Path) -> None:
    farm_file = tmp_path / "farm.toml"
    farm_file.write_text(FARM)
    state = StateDir.beside(farm_file)
    state.create()
    store = SqliteStore(state.database)
    ctl = Controller(load_farm(farm_file), farm_file.resolve(), state, store)
    world = fake.world(state.farm_id)
    try:
        await ctl.start()
        farm = Farm(ctl, world)
        ctl.scale("web", MAX)
        await farm.tick_until(farm.exactly(MAX), "2,000 nodes serving")
        assert len(world.alive()) == MAX

        storm = [n for n in ctl.nodes()][::20]  # 5%
        for node in storm:
            world.crash(node.id)
        await farm.tick_until(lambda: farm.exactly(MAX)() and all(
            (ctl.node(n.id) or n).restarts >= 1 for n in storm), "the storm healed")
        assert len(world.alive()) == MAX, "no duplicate, no orphan"

        ctl.scale("web", 500)
        await farm.tick_until(farm.exactly(500), "scaled in to 500")
        assert len(world.alive()) == 500
        ctl.scale("web", MAX)
        await farm.tick_until(farm.exactly(MAX), "scaled out to 2,000 again")
        assert len(world.alive()) == MAX
        assert sorted(n.slot for n in ctl.nodes()) == list(range(1, MAX + 1)), "names fill slots 1..2000"
    finally:
        ctl.request_shutdown("the test is over")
        await asyncio.wait_for(ctl.run(), 120)
        store.close()
        fake.forget(state.farm_id)
