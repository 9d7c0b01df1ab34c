"""The fake driver's own behaviour, beyond the shared contract (tests/integration/hosts/
test_driver_contract.py runs that for it too): options from the farm file, faults injected
through the world, seeded crashes, and a world that outlives its drivers. No process, no
socket: the world's clock is a number the test moves."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmhand.drivers import fake, make_driver
from farmhand.drivers.base import NodeLaunch, RunningNode
from farmhand.drivers.fake import FakeDriver, FakeWorld
from farmhand.errors import DriverError, HostUnreachable, SpecError
from farmhand.spec import parse_farm
from farmhand.spec.models import FarmSpec


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def farm_id() -> Iterator[str]:
    name = f"fake-{uuid.uuid4().hex[:8]}"
    yield name
    fake.forget(name)


@pytest.fixture
def clock(farm_id: str) -> Clock:
    ticking = Clock()
    fake.world(farm_id).now = ticking
    return ticking


def farm(options: str = "", count: int = 1) -> FarmSpec:
    return parse_farm(textwrap.dedent(f"""\
        [hosts.sim]
        driver = "fake"
        count = {count}
        fake = {{ {options} }}
        """))


def driver_for(spec: FarmSpec, farm_id: str, host: str = "sim-1", tmp: Path = Path("/nonexistent")) -> FakeDriver:
    driver = make_driver(host, spec.hosts[host], tmp, farm_id)
    assert isinstance(driver, FakeDriver)
    return driver


async def start(driver: FakeDriver, node_id: str, port: int | None = None) -> RunningNode:
    return await driver.start(NodeLaunch(node_id, "web", "app --port {port}", port=port))


def test_the_farm_file_states_a_fake_fleet_and_every_key_is_checked() -> None:
    spec = farm('start_latency = "0s", crash_rate = 0.0, flap_rate = 0.0, cpu = 5.0, rss_mb = 30', count=1000)
    assert len(spec.hosts) == 1000 and list(spec.hosts)[:2] == ["sim-1", "sim-2"] and "sim-1000" in spec.hosts
    assert all(host.count is None and host.fake_options.rss_mb == 30 for host in spec.hosts.values())

    with pytest.raises(SpecError) as caught:
        parse_farm(textwrap.dedent("""\
            [hosts.sim]
            driver = "fake"
            count = 3
            fake = { crash_rate = -1, flap_rate = 1.5, seed = "x", rss = 3 }

            [hosts.box]
            driver = "local"
            count = 2
            """))
    found = "\n".join(str(p) for p in caught.value.problems)
    for key in ("hosts.sim.fake.crash_rate", "hosts.sim.fake.flap_rate", "hosts.sim.fake.seed",
                "hosts.sim.fake.rss: unknown key (did you mean 'rss_mb'?)",
                'hosts.box.count: count is only for driver = "fake", not "local"'):
        assert key in found


def test_counted_hosts_never_shadow_a_named_one() -> None:
    with pytest.raises(SpecError, match="makes a host sim-2, which is also named elsewhere"):
        parse_farm('[hosts.sim]\ndriver = "fake"\ncount = 2\n\n[hosts.sim-2]\ndriver = "local"\n')
    with pytest.raises(SpecError, match="over 31 characters"):
        parse_farm(f'[hosts.{"s" * 28}]\ndriver = "fake"\ncount = 100\n')


async def test_a_fake_node_lives_in_memory_with_a_fake_pid_and_port(farm_id: str, clock: Clock) -> None:
    driver = driver_for(farm("cpu = 12.5, rss_mb = 64, connections = 3, cpus = 8, memory_mb = 1024, load = 0.5"), farm_id)
    port = await driver.pick_free_port(set())
    node = await start(driver, "web-1", port)
    other = await start(driver, "web-2", await driver.pick_free_port({port}))
    assert node.pid > 4_194_304 and node.pid != other.pid  # above any real pid: never a real process
    assert not await driver.port_is_free(port)
    assert node.started_at == clock.now

    metrics = await driver.node_metrics([node, other])
    assert metrics["web-1"].cpu_percent == 12.5 and metrics["web-1"].rss_bytes == 64 << 20
    assert metrics["web-1"].connections == 3
    host = await driver.host_metrics()
    assert (host.cpu_count, host.memory_total) == (8, 1024 << 20)
    assert host.load1 == pytest.approx(0.5 + 2 * 0.125)
    assert host.memory_available == (1024 << 20) - (1024 << 20) // 10 - 2 * (64 << 20)
    assert b"started web-1 (role web, pid" in await driver.read_log("web-1")


async def test_signals_stop_a_fake_node_and_it_is_reported_dead_once(farm_id: str, clock: Clock) -> None:
    driver = driver_for(farm(), farm_id)
    node = await start(driver, "web-1", 20_000)
    await driver.signal(node, "HUP")  # a reload signal: still running
    assert (await driver.list())["web-1"].alive
    await driver.signal(RunningNode("web-1", node.pid + 1, node.started_at), "KILL")  # another pid: not this node
    assert (await driver.list())["web-1"].alive

    await driver.signal(node, "TERM")
    dead = (await driver.list())["web-1"]
    assert (dead.alive, dead.exit_code, dead.pid) == (False, -15, node.pid)
    assert await driver.list() == {}
    assert await driver.port_is_free(20_000)
    assert await driver.node_metrics([node]) == {}
    assert (await driver.read_log("web-1")).endswith(b"stopped by SIGTERM; exit code -15\n")
    await driver.signal(node, "KILL")  # gone already: not an error


async def test_seeded_crash_rate_is_the_same_draws_whatever_the_polling(farm_id: str, clock: Clock) -> None:
    """Crash moments are drawn at start from the host's seeded generator: two worlds with the
    same seed see the same nodes die at the same moments, however often they are listed."""

    async def deaths(world_id: str, poll_every: float) -> list[tuple[str, float]]:
        world = fake.world(world_id)
        local_clock = Clock()
        world.now = local_clock
        driver = driver_for(farm("crash_rate = 0.05, crash_exit_code = 7, seed = 42"), world_id)
        for index in range(20):
            await start(driver, f"web-{index}")
        seen: list[tuple[str, float]] = []
        while local_clock.now < 1_060:
            local_clock.now += poll_every
            for node_id, node in (await driver.list()).items():
                if not node.alive:
                    assert node.exit_code == 7
                    seen.append((node_id, local_clock.now))
        fake.forget(world_id)
        return seen

    often = await deaths(farm_id + "-a", 0.5)
    seldom = await deaths(farm_id + "-b", 5.0)
    assert 5 <= len(often) <= 20  # 20 nodes at 0.05/s for 60 s: most of them die
    seen_often, seen_seldom = dict(often), dict(seldom)
    assert seen_often.keys() == seen_seldom.keys()
    assert all(0 <= seen_seldom[node] - seen_often[node] < 5 for node in seen_often)


async def test_the_world_outlives_a_closed_driver_as_adopted_nodes_do(farm_id: str, clock: Clock) -> None:
    spec = farm()
    first = driver_for(spec, farm_id)
    node = await start(first, "keeper", 20_001)
    await first.put_file(b"payload", "/srv/app.conf", mode=0o600)
    await first.close()

    second = driver_for(spec, farm_id)
    assert (await second.list())["keeper"] == node
    assert fake.world(farm_id).hosts["sim-1"].files["/srv/app.conf"] == (b"payload", 0o600)
    other_farm = driver_for(spec, farm_id + "-other")
    assert await other_farm.list() == {}  # worlds are per farm
    fake.forget(farm_id + "-other")


async def test_exec_runs_nothing_and_answers_what_the_farm_file_says(farm_id: str, clock: Clock) -> None:
    plain = driver_for(farm(count=2), farm_id)
    result = await plain.exec("rm -rf /", timeout=1)
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"", b"")
    told = driver_for(farm('exec_exit_code = 3, exec_output = "busy"', count=2), farm_id, "sim-2")
    result = await told.exec("systemctl reload app", timeout=1)
    assert (result.exit_code, result.stdout) == (3, b"busy")
    assert fake.world(farm_id).hosts["sim-2"].commands == ["systemctl reload app"]


async def test_simulated_health_boot_sickness_flaps_and_crashes(farm_id: str, clock: Clock) -> None:
    driver = driver_for(farm('boot_time = "2s", flap_rate = 0.25, seed = 3'), farm_id)
    world = fake.world(farm_id)
    await start(driver, "web-1")
    assert driver.simulated_health("web-1") == (False, "connection refused (still booting)")
    clock.now += 2
    answers = [driver.simulated_health("web-1") for _ in range(400)]
    failures = [detail for ok, detail in answers if not ok]
    assert set(failures) == {"failed at random (fake flap_rate)"}
    assert 50 <= len(failures) <= 150  # a quarter of 400, give or take

    steady = driver_for(farm(count=2), farm_id, "sim-2")
    await start(steady, "web-2")
    assert steady.simulated_health("web-2") == (True, "")
    world.set_sick("web-2")
    assert steady.simulated_health("web-2") == (False, "answered 500 (made sick by the fake world)")
    world.set_sick("web-2", False)
    assert steady.simulated_health("web-2") == (True, "")
    assert world.crash("web-2") > 0
    assert steady.simulated_health("web-2") == (False, "connection refused")
    assert (await steady.list())["web-2"].exit_code == 1
    with pytest.raises(KeyError, match="no fake node web-2"):
        world.crash("web-2")


async def test_a_cut_host_answers_nothing_until_joined_again(farm_id: str, clock: Clock) -> None:
    driver = driver_for(farm(), farm_id)
    node = await start(driver, "web-1")
    world: FakeWorld = fake.world(farm_id)
    world.cut("sim-1")
    with pytest.raises(HostUnreachable, match="host sim-1: no answer"):
        await driver.list()
    for call in (driver.host_metrics(), driver.signal(node, "TERM"), start(driver, "web-2")):
        with pytest.raises(DriverError):
            await call
    assert driver.simulated_health("web-1")[0] is False
    world.cut("sim-1", False)
    assert (await driver.list())["web-1"].alive  # it kept running behind the cut


async def test_start_latency_delays_the_start(farm_id: str) -> None:
    driver = driver_for(farm('start_latency = "50ms"'), farm_id)
    started = await start(driver, "slow-1")
    assert (await driver.list())["slow-1"] == started
