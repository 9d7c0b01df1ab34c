"""A host that stops answering is declared down on time and its nodes move, even when every
call on it hangs as on a cut link (issue 10.5). Uses the fake driver, whose calls a test can
make hang: a real cut link behaves the same way, with SSH's timeouts in place of forever."""

from __future__ import annotations

import asyncio
import builtins
import textwrap
from pathlib import Path
from typing import Any

import pytest

from farmhand.controller import loop
from farmhand.controller.loop import Controller
from farmhand.drivers.base import RunningNode
from farmhand.drivers.fake import FakeDriver
from farmhand.records import NodeState
from farmhand.spec import load_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir

pytestmark = pytest.mark.slow

FARM = textwrap.dedent("""\
    [farm]
    name = "lost"
    host_timeout = "1s"
    tick = "100ms"
    [hosts.a]
    driver = "fake"
    [hosts.b]
    driver = "fake"
    [roles.web]
    command = "app --port {port}"
    count = 4
    [roles.web.health]
    type = "http"
    interval = "100ms"
    fall = 1
    """)


class HangingDriver(FakeDriver):
    """A fake host whose every call hangs once ``hang`` is set, counting the calls left hanging."""

    hanging_hosts: set[str] = set()
    hung_calls: list[str] = []

    async def _maybe_hang(self, what: str) -> None:
        if self.name in self.hanging_hosts:
            self.hung_calls.append(f"{what} on {self.name}")
            await asyncio.Event().wait()

    async def list(self) -> dict[str, RunningNode]:
        await self._maybe_hang("list")
        return await super().list()

    async def signal(self, node: RunningNode, signame: str) -> None:
        await self._maybe_hang(f"SIG{signame} to {node.node_id}")
        await super().signal(node, signame)

    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        await self._maybe_hang(f"read_log of {node_id}")
        return await super().read_log(node_id, offset, limit)

    def simulated_health(self, node_id: str) -> tuple[bool, str]:
        if self.name in self.hanging_hosts:
            return False, "no answer"
        return super().simulated_health(node_id)

    async def node_metrics(self, nodes: builtins.list[RunningNode]) -> Any:
        await self._maybe_hang("node_metrics")
        return await super().node_metrics(nodes)


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_fake_host_whose_calls_hang_is_declared_down_and_its_nodes_move(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "make_driver", lambda name, spec, state, farm_id: HangingDriver(name, spec, state, farm_id))
    HangingDriver.hanging_hosts, HangingDriver.hung_calls = set(), []
    farm_file = tmp_path / "farm.toml"
    farm_file.write_text(FARM)
    state = StateDir.beside(farm_file)
    state.create()
    store = SqliteStore(state.database)
    ctl = Controller(load_farm(farm_file), farm_file, state, store)
    await ctl.start()
    running = asyncio.create_task(ctl.run())
    try:
        def ready_on(host: str | None = None) -> list[str]:
            return [n.id for n in store.nodes() if n.state == NodeState.RUNNING and host in (None, n.host)]

        await wait_until(lambda: len(ready_on()) == 4 and ready_on("a"), 30, "4 nodes ready, some on host a")
        HangingDriver.hanging_hosts.add("a")
        await wait_until(lambda: len(ready_on("b")) == 4 and not [n for n in store.nodes() if n.host == "a"],
                         60, "the nodes of host a to run on b")
        assert ctl.ctx.hosts["a"].state == "down"
        assert any("SIG" in call for call in HangingDriver.hung_calls), (
            "a stop was sent to the lost host and never answered, yet the farm moved on")
    finally:
        ctl.request_shutdown("test over")
        await asyncio.wait_for(running, 30)
        store.close()
