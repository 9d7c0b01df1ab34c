"""The driver contract, run against every driver: what a node does must not depend on where
it runs. The same tests drive ``LocalDriver`` (a temporary state dir), ``SshDriver`` (one
test host per module) and ``FakeDriver`` (nodes simulated in memory); each test gets its own
farm id and base directory.

The fake driver runs no command, so where a real driver's node would do something by itself
(exit with a code, answer on its port) the harness asks the fake world to make it happen;
tests that are about running real commands (environment, exec, files read back by a command)
say so and skip it: tests/unit/test_fake_driver.py covers the fake's side of those. The
local and ssh cases are slow (real processes, an sshd); the fake ones are not.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farmhand.drivers import fake
from farmhand.drivers.base import Driver, NodeLaunch, RunningNode
from farmhand.drivers.fake import FakeDriver
from farmhand.drivers.local import LocalDriver
from farmhand.drivers.ssh import SshDriver
from farmhand.spec.models import HostSpec
from testhosts import TestHost, wait_until

_base_numbers = itertools.count()


@dataclass
class Harness:
    """One host as a driver sees it, and a way to restart the "controller" (a new driver)."""

    kind: str
    factory: Callable[[], Driver]
    python: str
    """The interpreter to run nodes with on that host."""
    scratch: str
    """A directory on the host that the driver's user may write."""
    farm_id: str
    drivers: list[Driver] = field(default_factory=list)

    def make(self) -> Driver:
        driver = self.factory()
        self.drivers.append(driver)
        return driver

    @property
    def runs_commands(self) -> bool:
        return self.kind != "fake"

    def needs_commands(self) -> None:
        if not self.runs_commands:
            pytest.skip("the fake driver runs no command (tests/unit/test_fake_driver.py covers it)")

    async def serving(self, driver: Driver, port: int) -> bool:
        """Whether the node on ``port`` answers: a connect, or the fake's own health answer."""
        if self.runs_commands:
            return await _accepts(driver.address, port)
        alive = [n for n in fake.world(self.farm_id).alive().values() if n.port == port]
        return bool(alive) and driver.simulated_health(alive[0].node_id) == (True, "")

    def ended_by_itself(self, node_id: str, code: int) -> None:
        """A real node's command ends by itself (with ``code``); a fake node is ended so by
        the fake world."""
        if not self.runs_commands:
            fake.world(self.farm_id).crash(node_id, code)


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.slow), pytest.param("ssh", marks=pytest.mark.slow),
                        "fake"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    farm_id = f"contract-{uuid.uuid4().hex[:8]}"
    if request.param == "fake":
        fake_spec = HostSpec(driver="fake")
        made = Harness("fake", lambda: FakeDriver("sim-1", fake_spec, tmp_path / "state", farm_id), "python3",
                       "/scratch", farm_id)
    elif request.param == "local":
        spec = HostSpec(driver="local", base_dir=str(tmp_path / "base"))
        made = Harness(
            "local",
            lambda: LocalDriver("local", spec, tmp_path / "state", farm_id),
            sys.executable,
            str(tmp_path / "scratch"),
            farm_id,
        )
    else:
        host: TestHost = request.getfixturevalue("module_host")
        base = host.base_dir / f"t{next(_base_numbers)}"
        ssh_spec = host.spec(base_dir=str(base))
        made = Harness(
            "ssh",
            lambda: SshDriver(host.name, ssh_spec, tmp_path / "state", farm_id),
            "python3",
            str(base / "scratch"),
            farm_id,
        )
    try:
        yield made
    finally:
        await _stop_everything(made.drivers)
        fake.forget(farm_id)


async def _stop_everything(drivers: list[Driver]) -> None:
    for driver in drivers:
        try:
            for node in (await driver.list()).values():
                if node.alive:
                    await driver.signal(node, "KILL")
        except Exception:  # the test already failed or closed it; the host goes away anyway
            pass
        await driver.close()


async def _accepts(address: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 2)
    except OSError:
        return False
    writer.close()
    return True


async def _start_http(harness: Harness, driver: Driver, node_id: str) -> tuple[RunningNode, int]:
    port = await driver.pick_free_port(set())
    command = f"{harness.python} -m http.server {port} --bind {driver.address}"
    node = await driver.start(NodeLaunch(node_id, "web", command, port=port))
    await wait_until(lambda: harness.serving(driver, port), f"{node_id} accepts on port {port}")
    return node, port


async def _reported_dead(driver: Driver, node_id: str) -> RunningNode:
    """Wait until ``list()`` reports the node dead, and return that report."""

    async def dead() -> RunningNode | None:
        node = (await driver.list()).get(node_id)
        return node if node is not None and not node.alive else None

    return await wait_until(dead, f"{node_id} reported dead")


async def test_start_list_metrics_and_stop(harness: Harness) -> None:
    driver = harness.make()
    node, port = await _start_http(harness, driver, "web-1")

    listed = (await driver.list())["web-1"]
    assert (listed.pid, listed.started_at, listed.alive) == (node.pid, node.started_at, True)
    assert not await driver.port_is_free(port)

    first = (await driver.node_metrics([node]))["web-1"]
    assert await harness.serving(driver, port)
    second = (await driver.node_metrics([node]))["web-1"]
    for metrics in (first, second):
        assert metrics.rss_bytes > 1_000_000
        assert metrics.connections >= 1  # the listening socket counts, as psutil counts it
        assert metrics.cpu_percent >= 0.0

    await driver.signal(node, "TERM")
    dead = await _reported_dead(driver, "web-1")
    assert dead.pid == node.pid
    assert "web-1" not in await driver.list()
    await driver.signal(node, "TERM")  # gone already: not an error
    assert await driver.node_metrics([node]) == {}


async def test_a_node_that_exits_is_reported_dead_once(harness: Harness) -> None:
    driver = harness.make()
    node = await driver.start(NodeLaunch("quitter", "job", "sleep 0.2; exit 3"))
    harness.ended_by_itself("quitter", 3)
    dead = await _reported_dead(driver, "quitter")
    assert dead.pid == node.pid
    # The local driver reaps its children (and the fake knows); over SSH the status is lost.
    assert dead.exit_code == (None if harness.kind == "ssh" else 3)
    assert "quitter" not in await driver.list()


async def test_a_restarted_controller_adopts_running_nodes(harness: Harness) -> None:
    first = harness.make()
    node = await first.start(NodeLaunch("keeper", "job", "sleep 300", env={"COLOUR": "blue"}))
    await first.close()

    second = harness.make()
    adopted = (await second.list())["keeper"]
    assert (adopted.pid, adopted.started_at, adopted.alive) == (node.pid, node.started_at, True)
    await second.signal(adopted, "KILL")
    assert (await _reported_dead(second, "keeper")).pid == node.pid


async def test_nodes_get_their_environment_and_workdir(harness: Harness) -> None:
    harness.needs_commands()
    driver = harness.make()
    await driver.put_file(b"", f"{harness.scratch}/.keep")
    command = 'echo "$FARMHAND_NODE $PORT $COLOUR $(pwd)"'
    launch = NodeLaunch("env-1", "job", command, env={"COLOUR": "dark red"}, workdir=harness.scratch, port=8123)
    await driver.start(launch)
    await _reported_dead(driver, "env-1")
    assert await driver.read_log("env-1") == f"env-1 8123 dark red {harness.scratch}\n".encode()


async def test_read_log(harness: Harness) -> None:
    driver = harness.make()
    await driver.start(NodeLaunch("talker", "job", "echo one; echo two >&2"))
    harness.ended_by_itself("talker", 0)
    await _reported_dead(driver, "talker")
    whole = await driver.read_log("talker")
    if harness.runs_commands:
        assert whole == b"one\ntwo\n"
    assert len(whole) > 6
    assert await driver.read_log("talker", offset=4) == whole[4:]
    assert await driver.read_log("talker", offset=4, limit=2) == whole[4:6]
    assert await driver.read_log("talker", offset=len(whole) + 100) == b""
    assert await driver.read_log("never-started") == b""


async def test_exec(harness: Harness) -> None:
    harness.needs_commands()
    driver = harness.make()
    result = await driver.exec("echo out; echo err >&2; exit 7", timeout=10)
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    result = await driver.exec('printf %s "$GREETING"', timeout=10, env={"GREETING": "hello 'you'"})
    assert (result.exit_code, result.stdout) == (0, b"hello 'you'")
    result = await driver.exec("cat", timeout=10)  # stdin is closed, not waited on
    assert (result.exit_code, result.stdout) == (0, b"")
    timed_out = await driver.exec("sleep 30", timeout=0.5)
    assert (timed_out.exit_code, timed_out.stdout) == (124, b"")


async def test_put_file_replaces_whole_files(harness: Harness) -> None:
    harness.needs_commands()
    driver = harness.make()
    path = f"{harness.scratch}/deep/er/data.bin"
    payload = bytes(range(256)) * 1000
    await driver.put_file(payload, path, mode=0o600)
    read = await driver.exec(f"cat '{path}'; stat -c %a '{path}' >&2", timeout=10)
    assert (read.stdout, read.stderr) == (payload, b"600\n")
    await driver.put_file(b"second", path)
    assert (await driver.exec(f"cat '{path}'", timeout=10)).stdout == b"second"
    await driver.put_file(b"", path)
    assert (await driver.exec(f"wc -c < '{path}'", timeout=10)).stdout.strip() == b"0"
    listing = await driver.exec(f"ls -A '{harness.scratch}/deep/er'", timeout=10)
    assert listing.stdout == b"data.bin\n"  # no temporary file left behind


async def test_ports(harness: Harness) -> None:
    driver = harness.make()
    first = await driver.pick_free_port(set())
    second = await driver.pick_free_port({first})
    assert second != first
    assert await driver.port_is_free(first)
    node, port = await _start_http(harness, driver, "porter")
    assert not await driver.port_is_free(port)
    assert port not in {await driver.pick_free_port(set()) for _ in range(5)}
    await driver.signal(node, "KILL")
    await _reported_dead(driver, "porter")


async def test_host_metrics(harness: Harness) -> None:
    metrics = await harness.make().host_metrics()
    assert metrics.cpu_count >= 1
    assert metrics.load1 >= 0.0
    assert metrics.memory_total > metrics.memory_available > 0
