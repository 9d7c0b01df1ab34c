"""Issue 3's behaviour tests: steady traffic through a real engine while nodes come and go.

Each scenario runs against both engines (builtin, haproxy) and both modes. http mode must
see zero failed requests; tcp mode may only lose connections that were open on a node killed
with -9, and the test counts those at the moment of the kill.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lb_harness import BackendProc, Backends, HttpLoad, TcpLoad, engine_pids, wait_for

from farmhand.dataplane import Backend

pytestmark = pytest.mark.slow

MODES = ["http", "tcp"]


def as_backend(node: BackendProc, state: str = "ready") -> Backend:
    return Backend(name=node.name, host="127.0.0.1", port=node.port, state=state)  # type: ignore[arg-type]


class Scenario:
    """One engine, its backends and a client load, with the moves the controller makes."""

    def __init__(self, engine: str, mode: str, plane_factory: Callable[..., Any], backends: Backends) -> None:
        self.engine = engine
        self.mode = mode
        self.plane_factory = plane_factory
        self.backends = backends
        self.plane: Any = None
        self.live: list[BackendProc] = []
        self.load: HttpLoad | TcpLoad | None = None

    async def start(self, n: int) -> None:
        self.live = await self.backends.start(n)
        self.plane = self.plane_factory(self.engine, self.mode)
        await self.plane.ensure_running()
        await self.set(self.live)
        port = self.plane.settings.listen_port
        self.load = HttpLoad(port) if self.mode == "http" else TcpLoad(port)
        self.load.start()
        await self.more(100)

    async def set(self, nodes: list[BackendProc], draining: tuple[BackendProc, ...] = ()) -> None:
        await self.plane.set_backends([as_backend(n, "drain" if n in draining else "ready") for n in nodes])

    async def more(self, n: int) -> None:
        assert self.load is not None
        await self.load.more(n)

    def served(self, node: BackendProc) -> int:
        assert self.load is not None
        return self.load.stats.by_backend[node.name]

    async def add(self, n: int) -> list[BackendProc]:
        """Start nodes, add them, and wait until each has answered."""
        new = await self.backends.start(n)
        self.live += new
        await self.set(self.live)
        for node in new:
            await wait_for(lambda node=node: self.served(node) > 0, f"traffic on new node {node.name}")
        return new

    async def remove(self, nodes: list[BackendProc]) -> None:
        """Drain, wait until nothing is in flight, stop gracefully, then remove."""
        await self.set(self.live, draining=tuple(nodes))
        for node in nodes:
            async def idle(node: BackendProc = node) -> bool:
                return await self.plane.active(node.name) == 0

            await wait_for(idle, f"{node.name} to drain")
        for node in nodes:
            await node.stop()
        self.live = [n for n in self.live if n not in nodes]
        await self.set(self.live)

    async def finish(self) -> Any:
        assert self.load is not None
        await self.more(100)
        return await self.load.stop()


@pytest.fixture
def scenario(engine: str, mode: str, plane_factory: Callable[..., Any], backends_factory: Callable[[str], Backends]) -> Scenario:
    return Scenario(engine, mode, plane_factory, backends_factory(mode))


def assert_no_failures(stats: Any) -> None:
    assert stats.failed == 0, stats.errors[:10]
    assert stats.ok > 0


@pytest.mark.parametrize("mode", MODES)
async def test_kill_9_a_node(scenario: Scenario, mode: str) -> None:
    await scenario.start(3)
    victim = scenario.live[0]
    load = scenario.load
    assert load is not None
    exposed: set[int] = set()
    if isinstance(load, TcpLoad):  # which connections the kill may break, counted at the kill
        await load.quiesce_connects()
        exposed = {conn for conn, name in load.open_on.items() if name == victim.name}
    victim.kill9()
    if isinstance(load, TcpLoad):
        load.may_connect.set()
    await scenario.more(300)

    async def ejected() -> bool:
        return bool((await scenario.plane.stats())["backends"][victim.name]["ejected"])

    await wait_for(ejected, "the killed node to be ejected")
    # The node comes back on the same address: the engine's own check readmits it.
    reborn = await scenario.backends.start_on(victim.name, victim.port)
    before = scenario.served(victim)
    await wait_for(lambda: scenario.served(victim) > before, "the restarted node to be readmitted")
    scenario.live[0] = reborn
    await scenario.remove([reborn])  # and now it leaves the proper way
    stats = await scenario.finish()
    if mode == "http":
        assert_no_failures(stats)
    else:
        failed = {conn for conn, _ in stats.failed_conns}
        assert failed <= exposed, f"failures outside the {len(exposed)} connections open on the killed node: {stats.errors[:10]}"
        assert stats.ok > 0


@pytest.mark.parametrize("mode", MODES)
async def test_drain_then_graceful_stop(scenario: Scenario, mode: str) -> None:
    await scenario.start(3)
    await scenario.remove([scenario.live[0]])
    assert_no_failures(await scenario.finish())


@pytest.mark.parametrize("mode", MODES)
async def test_scale_4_to_1_to_4(scenario: Scenario, mode: str) -> None:
    await scenario.start(4)
    await scenario.remove(scenario.live[1:])
    await scenario.more(200)
    await scenario.add(3)
    assert len(scenario.live) == 4
    assert_no_failures(await scenario.finish())


@pytest.mark.parametrize("mode", MODES)
async def test_replace_every_node_one_by_one(scenario: Scenario, mode: str) -> None:
    await scenario.start(2)
    originals = list(scenario.live)
    for old in originals:
        await scenario.add(1)
        await scenario.remove([old])
    assert not set(originals) & set(scenario.live)
    assert_no_failures(await scenario.finish())


@pytest.mark.parametrize("mode", MODES)
async def test_controller_killed_and_restarted(scenario: Scenario, mode: str, short_tmp: Path) -> None:
    await scenario.start(3)
    run_dir = short_tmp / "lb" / "web"
    pids = engine_pids(run_dir, scenario.engine)
    assert pids
    scenario.plane = None  # the controller dies (kill -9): its handle is simply gone
    await scenario.more(200)  # the data plane keeps serving on its own
    adopted = scenario.plane_factory(scenario.engine, mode)
    await adopted.ensure_running()
    assert engine_pids(run_dir, scenario.engine) == pids, "a second engine was started instead of adopting"
    scenario.plane = adopted
    await scenario.set(scenario.live)  # the restarted controller sends the same set again
    await scenario.add(1)
    await scenario.remove([scenario.live[0]])
    stats = await adopted.stats()
    assert stats["requests_per_s"] >= 0
    assert sum(b["requests"] for b in stats["backends"].values()) > 0
    assert_no_failures(await scenario.finish())
