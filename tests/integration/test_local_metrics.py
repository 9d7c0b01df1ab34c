"""Local nodes' metrics after sampling went to /proc in one pass: the local driver still gives
CPU, RSS and connections as psutil measures them (connections only while wanted), and a real
farm still shows them in status: CPU and RSS always, connections when a policy names them."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from farmhand.drivers.base import NodeLaunch, NodeMetrics, RunningNode
from farmhand.drivers.local import LocalDriver
from farmhand.spec.models import HostSpec
from tests.integration.farmkit import Farm, free_port, wait_for

pytestmark = pytest.mark.slow

BUSY_SERVER = (
    "import socket\n"
    "s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
    "c = socket.create_connection(('127.0.0.1', {port})); a, _ = s.accept()\n"
    "x = bytearray(8 << 20)\n"
    "while True: pass\n"
)
"""A node that holds three TCP sockets (a listener and both ends of one connection), 8 MB
more memory than a bare interpreter, and one busy core."""


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LocalDriver]:
    local = LocalDriver("local", HostSpec(), tmp_path, uuid.uuid4().hex)
    yield local
    for node in (await local.list()).values():
        await local.signal(node, "KILL")


async def _sample_until(driver: LocalDriver, node: RunningNode,
                        done: Callable[[NodeMetrics], bool]) -> NodeMetrics:
    last: list[NodeMetrics] = []

    async def sampled() -> bool:
        metrics = (await driver.node_metrics([node])).get(node.node_id)
        if metrics is not None:
            last[:] = [metrics]
        return metrics is not None and done(metrics)

    await _wait(sampled)
    return last[0]


async def _wait(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_cpu_rss_and_connections_as_psutil_measures_them(driver: LocalDriver, tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "busy.py"
    script.write_text(BUSY_SERVER.format(port=port))
    node = await driver.start(NodeLaunch("web-1", "web", f"{sys.executable} {script}"))
    process = psutil.Process(node.pid)
    assert node.started_at == pytest.approx(process.create_time(), abs=0.01), "psutil's start time"

    def settled(m: NodeMetrics) -> bool:
        return m.connections == 3 and m.cpu_percent > 0.0

    metrics = await _sample_until(driver, node, settled)
    assert metrics.connections == len(process.net_connections("tcp"))
    assert metrics.rss_bytes > 8 << 20
    rss = process.memory_info().rss
    assert abs(metrics.rss_bytes - rss) <= rss // 10, "the same figure, read a moment apart"

    driver.want_metrics(frozenset())
    unwanted = (await driver.node_metrics([node]))["web-1"]
    assert unwanted.connections is None, "not counted while nobody reads connections"
    assert unwanted.rss_bytes > 8 << 20 and unwanted.cpu_percent >= 0.0

    await driver.signal(node, "KILL")
    await _wait(lambda: _dead(driver, "web-1"))
    assert await driver.node_metrics([node]) == {}, "a dead node has no metrics"


async def _dead(driver: LocalDriver, node_id: str) -> bool:
    found = (await driver.list()).get(node_id)
    return found is None or not found.alive


async def test_a_recycled_pid_is_not_the_node(driver: LocalDriver) -> None:
    node = await driver.start(NodeLaunch("web-1", "web", "sleep 30"))
    stranger = RunningNode("web-1", node.pid, node.started_at - 5.0)
    assert await driver.node_metrics([stranger]) == {}
    assert "web-1" in await driver.node_metrics([node])


def farm_with(autoscale: str) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "metrics"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        min = 2
        max = 2
        stop_grace = "3s"

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        start_grace = "5s"

        [roles.web.autoscale]
        interval = "500ms"
        {autoscale}
        """)


@pytest.mark.parametrize("policy", ['target = [{ metric = "connections", value = 100 }]',
                                    'target = [{ metric = "cpu", value = 80 }]'])
def test_a_farm_shows_cpu_and_rss_and_connections_when_a_policy_reads_them(
        make_farm: Callable[[str], Farm], policy: str) -> None:
    farm = make_farm(farm_with(policy))
    farm.up()
    farm.wait_ready("web", 2)

    def sampled() -> dict[str, float] | None:
        status = farm.status()
        role = next(r for r in status["roles"] if r["name"] == "web")
        nodes = [n for n in status["nodes"] if n["role"] == "web"]
        metrics: dict[str, float] = role.get("metrics") or {}
        ready = "cpu" in metrics and all(n.get("cpu") is not None and n.get("rss_mb") for n in nodes)
        return metrics if ready else None

    metrics = wait_for(sampled, 30, "cpu and rss sampled for the role and its nodes")
    assert metrics["rss_mb"] > 1
    if "connections" in policy:
        assert metrics["connections"] >= 1, "each node's listening socket counts"
    else:
        assert "connections" not in metrics, "nobody reads connections: not counted"
