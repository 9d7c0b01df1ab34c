"""Farms on the fake driver: the real controller, store, API and CLI over hosts and nodes
simulated in memory (farmhand.drivers.fake). The in-process tests run a ``Controller`` in the
test's own loop so they can reach the fake world and inject faults; the CLI test runs the
real ``farmhand`` command. No node process is made, so these stay quick at hundreds of nodes."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from farmhand.controller.loop import Controller
from farmhand.drivers import fake
from farmhand.records import NodeRecord, NodeState
from farmhand.spec import load_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir
from tests.integration.farmkit import Farm, wait_for

pytestmark = pytest.mark.slow
T = TypeVar("T")


FAST_CHECKS = 'type = "http", path = "/health", interval = "200ms", fall = 1, start_grace = "0s"'


def fake_farm(hosts: int, per_host: int, nodes: int, options: str = "", farm: str = "", health: str = FAST_CHECKS) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "sim"
        {farm}

        [hosts.sim]
        driver = "fake"
        count = {hosts}
        capacity = {{ nodes = {per_host} }}
        fake = {{ {options} }}

        [roles.web]
        command = "app --port {{port}}"
        count = {nodes}
        health = {{ {health} }}
        """)


async def until(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``probe`` (plain, cheap) while the controller runs in this loop; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = probe()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.asynccontextmanager
async def controller(tmp_path: Path, farm_toml: str) -> AsyncIterator[tuple[Controller, fake.FakeWorld]]:
    """A controller running the farm in this loop; stopped (nodes and all) when the test ends."""
    farm_file = tmp_path / "farm.toml"
    farm_file.write_text(farm_toml)
    state = StateDir.beside(farm_file)
    state.create()
    store = SqliteStore(state.database)
    ctl = Controller(load_farm(farm_file), farm_file.resolve(), state, store)
    world = fake.world(state.farm_id)
    run: asyncio.Task[None] | None = None
    try:
        await ctl.start()
        run = asyncio.create_task(ctl.run())
        yield ctl, world
        ctl.request_shutdown("the test is over")
        await asyncio.wait_for(asyncio.shield(run), 60)
        left = [n.node_id for h in world.hosts.values() if not h.cut_off for n in h.nodes.values() if n.alive]
        assert left == [], "every fake node the controller can reach stopped with the farm"
    finally:
        if run is not None and not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run
        for host in ctl.ctx.hosts.values():  # a cut host's last background probe (the controller leaves it)
            if host.probe is not None:
                host.probe.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await host.probe
        store.close()
        fake.forget(state.farm_id)


def serving(ctl: Controller, role: str = "web") -> list[NodeRecord]:
    return [n for n in ctl.ctx.store.nodes() if n.role == role and n.state == NodeState.RUNNING]


def all_serving(ctl: Controller, count: int) -> Callable[[], list[NodeRecord] | None]:
    def probe() -> list[NodeRecord] | None:
        nodes = ctl.ctx.store.nodes()
        ready = [n for n in nodes if n.state == NodeState.RUNNING]
        return ready if len(ready) == count == len(nodes) else None

    return probe


async def test_fake_farm_heals_a_crash_injected_by_the_world(tmp_path: Path) -> None:
    async with controller(tmp_path, fake_farm(hosts=3, per_host=4, nodes=6)) as (ctl, world):
        nodes = await until(all_serving(ctl, 6), "6 fake nodes serving")
        victim = nodes[0]
        assert world.crash(victim.id, exit_code=9) == victim.pid

        def healed() -> NodeRecord | None:
            node = ctl.ctx.store.node(victim.id)
            back = node is not None and node.restarts >= 1 and node.state == NodeState.RUNNING
            return node if back and all_serving(ctl, 6)() else None

        node = await until(healed, f"{victim.id} restarted in place and the farm serving again")
        assert node.pid != victim.pid and node.host == victim.host and node.port == victim.port
        failed = [e for e in ctl.ctx.store.events(0, 1000) if e.kind == "node.failed" and e.node == victim.id]
        assert failed and "crashed (injected); exit code 9" in failed[0].message


async def test_fake_farm_of_200_nodes_converges_and_survives_a_crash_storm(tmp_path: Path) -> None:
    async with controller(tmp_path, fake_farm(hosts=10, per_host=20, nodes=200)) as (ctl, world):
        nodes = await until(all_serving(ctl, 200), "200 fake nodes serving", timeout=120)
        per_host: dict[str, int] = {}
        for node in nodes:
            per_host[node.host] = per_host.get(node.host, 0) + 1
        assert sorted(per_host) == sorted(f"sim-{i}" for i in range(1, 11))
        assert max(per_host.values()) <= 20
        assert len({n.pid for n in nodes}) == 200 and len(world.alive()) == 200

        storm = [n for n in nodes[::10]]  # 10%: twenty nodes at once
        for node in storm:
            world.crash(node.id)

        def recovered() -> bool:
            restarted = [ctl.ctx.store.node(n.id) for n in storm]
            return all(n is not None and n.restarts >= 1 for n in restarted) and bool(all_serving(ctl, 200)())

        await until(recovered, "the twenty crashed nodes restarted and all 200 serving", timeout=120)
        assert len(world.alive()) == 200  # no duplicate, no orphan


async def test_fake_host_cut_off_has_its_nodes_placed_elsewhere(tmp_path: Path) -> None:
    farm_toml = fake_farm(hosts=3, per_host=4, nodes=6, farm='host_timeout = "1s"')
    async with controller(tmp_path, farm_toml) as (ctl, world):
        await until(all_serving(ctl, 6), "6 fake nodes serving")
        assert any(n.host == "sim-1" for n in ctl.ctx.store.nodes())
        world.cut("sim-1")

        def moved() -> list[NodeRecord] | None:
            nodes = all_serving(ctl, 6)()
            return nodes if nodes and all(n.host != "sim-1" for n in nodes) else None

        await until(moved, "six nodes serving on sim-2 and sim-3")
        assert ctl.ctx.hosts["sim-1"].state == "down"


async def test_fake_host_that_returns_has_its_replaced_nodes_stopped(tmp_path: Path) -> None:
    farm_toml = fake_farm(hosts=3, per_host=4, nodes=6, farm='host_timeout = "1s"')
    async with controller(tmp_path, farm_toml) as (ctl, world):
        await until(all_serving(ctl, 6), "6 fake nodes serving")
        world.cut("sim-1")
        await until(lambda: ctl.ctx.hosts["sim-1"].state == "down" and all_serving(ctl, 6)()
                    and all(n.host != "sim-1" for n in ctl.ctx.store.nodes()), "sim-1's nodes placed elsewhere")
        world.cut("sim-1", False)
        await until(lambda: not [n for n in world.hosts["sim-1"].nodes.values() if n.alive],
                    "the returning host's orphans stopped", timeout=10)
        assert all_serving(ctl, 6)()


def test_fake_farm_through_the_farmhand_command(make_farm: Callable[[str], Farm]) -> None:
    farm = make_farm(fake_farm(hosts=3, per_host=12, nodes=30, options='boot_time = "300ms"',
                              health='type = "http", interval = "200ms", start_grace = "5s"'))
    checked = farm.cli("check", "farm.toml")
    assert "3 host(s)" in checked.stdout and "30 node(s)" in checked.stdout
    farm.up()  # returns once every role is healthy
    status = farm.status()
    web = [r for r in status["roles"] if r["name"] == "web"][0]
    assert (web["wanted"], web["healthy"]) == (30, 30)
    assert {n["state"] for n in status["nodes"]} == {"running"}
    assert {n["health"] for n in status["nodes"]} == {"healthy"}
    assert sorted(h["name"] for h in status["hosts"]) == ["sim-1", "sim-2", "sim-3"]
    assert {h["driver"] for h in status["hosts"]} == {"fake"}
    assert all(h["nodes"] <= 12 for h in status["hosts"]) and sum(h["nodes"] for h in status["hosts"]) == 30

    farm.cli("down", "--timeout", "30")
    # the controller was the farm's only process: fake nodes ended with it
    wait_for(lambda: not farm.state.api_file.exists() and not farm.farm_processes(), 30, "the controller gone")


