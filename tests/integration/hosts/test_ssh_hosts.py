"""The SSH driver against several test hosts: each host is its own, a bad host entry fails
with an error that says what to fix and never holds up a good host, and a host whose link is
cut fails fast and comes back by itself."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from farmhand.drivers.base import NodeLaunch
from farmhand.drivers.ssh import SshDriver
from farmhand.drivers.ssh_session import SshTimeouts
from farmhand.errors import DriverError, HostUnreachable
from testhosts import TestHost, TestHostRun, wait_until

pytestmark = pytest.mark.slow

FAST = SshTimeouts(connect=2, call=2, keepalive_interval=1, backoff_initial=0.1, backoff_max=0.5)
"""Short timeouts so a cut link is noticed in seconds (production waits longer)."""

DriverFactory = Callable[..., SshDriver]


@pytest.fixture
async def make_driver(tmp_path: Path) -> AsyncIterator[DriverFactory]:
    """``make_driver(name, host, **spec overrides)``; every driver is closed at the end."""
    farm_id = f"hosts-{uuid.uuid4().hex[:8]}"
    drivers: list[SshDriver] = []

    def make(name: str, host: TestHost, *, timeouts: SshTimeouts | None = None, **overrides: object) -> SshDriver:
        driver = SshDriver(name, host.spec(**overrides), tmp_path, farm_id, timeouts=timeouts)
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            await driver.close()


async def test_each_host_has_its_own_files_and_nodes(
    three_hosts: TestHostRun, make_driver: DriverFactory
) -> None:
    drivers = {host.name: make_driver(host.name, host) for host in three_hosts.hosts}
    for name, driver in drivers.items():
        await driver.put_file(name.encode(), f"{three_hosts.host(name).base_dir}/whoami")
    started = {
        name: await driver.start(NodeLaunch("same-id", "job", "sleep 300"))
        for name, driver in drivers.items()
    }

    for name, driver in drivers.items():
        host = three_hosts.host(name)
        assert driver.address == host.address
        answer = await driver.exec(f'cat {host.base_dir}/whoami; echo " $SSH_CONNECTION"', timeout=10)
        whoami, client, _, server, port = answer.stdout.decode().split()
        assert (whoami, client, server, port) == (name, three_hosts.gateway, host.address, "22")
        listed = await driver.list()
        assert list(listed.values()) == [started[name]]  # its own node, not its neighbours
        await driver.signal(listed["same-id"], "KILL")


async def test_bad_host_entries_fail_clearly_and_leave_good_hosts_alone(
    testhosts: Callable[..., TestHostRun], make_driver: DriverFactory, tmp_path: Path
) -> None:
    run = testhosts(2)
    target, other = run.hosts
    strangers = tmp_path / "known_hosts_without_target"
    strangers.write_text(f"{other.address} {other.public_key}\n")
    changed = tmp_path / "known_hosts_with_changed_key"
    changed.write_text(f"{target.address} {other.public_key}\n")
    locked = target.dir / "root-only"
    locked.mkdir(mode=0o755)  # owned by root: the login user cannot create the base dir in it
    wrong_pub = run.wrong_key_file.with_suffix(".pub").read_text().split()
    expected: dict[str, tuple[type[DriverError], str, SshDriver]] = {
        "nowhere": (HostUnreachable, f"cannot reach {run.unused_address}:22",
                    make_driver("nowhere", target, address=run.unused_address)),
        "no-sshd": (HostUnreachable, f"connection refused by {target.address}:2222",
                    make_driver("no-sshd", target, port=2222)),
        "wrong-key": (DriverError, f"authentication failed for user {target.user} with key {run.wrong_key_file}",
                      make_driver("wrong-key", target, key_file=str(run.wrong_key_file))),
        "unknown-key": (DriverError, f"host key of {target.address}:22 is not in known_hosts {strangers}",
                        make_driver("unknown-key", target, known_hosts=str(strangers))),
        "changed-key": (DriverError, f"host key of {target.address}:22 does not match its entry in known_hosts {changed}",
                        make_driver("changed-key", target, known_hosts=str(changed))),
        "wrong-pin": (DriverError, f"host key of {target.address}:22 does not match the pinned host_key",
                      make_driver("wrong-pin", target, known_hosts=None, host_key=" ".join(wrong_pub[:2]))),
        "no-rights": (DriverError, f"cannot use base directory {locked}/base: mkdir: cannot create directory",
                      make_driver("no-rights", target, base_dir=str(locked / "base"))),
        "unverified": (DriverError, "no host key to verify against",
                       make_driver("unverified", target, known_hosts=None)),
    }
    good = make_driver("good", target)
    pinned = make_driver("pinned", other, known_hosts=None, host_key=other.public_key)

    async def use_good_hosts() -> list[str]:
        node = await good.start(NodeLaunch("steady", "job", "sleep 300"))
        assert (await good.list())["steady"].pid == node.pid
        await good.signal(node, "KILL")
        return [(await driver.exec("echo ok", timeout=10)).stdout.decode().strip() for driver in (good, pinned)]

    outcomes = await asyncio.gather(
        use_good_hosts(), *(driver.list() for _, _, driver in expected.values()), return_exceptions=True
    )
    assert outcomes[0] == ["ok", "ok"]
    for (name, (kind, message, _)), outcome in zip(expected.items(), outcomes[1:], strict=True):
        assert type(outcome) is kind, f"{name}: {outcome!r}"
        assert isinstance(outcome, DriverError)
        assert outcome.host == name
        assert str(outcome).startswith(f"host {name}: {message}"), f"{name}: {outcome}"
    # A second call fails the same way (from the backoff, not another handshake).
    for name, (kind, message, driver) in expected.items():
        with pytest.raises(kind, match=f"^host {re.escape(name)}: {re.escape(message)}"):
            await driver.list()


async def test_a_cut_link_fails_fast_and_the_driver_reconnects(
    testhosts: Callable[..., TestHostRun], make_driver: DriverFactory
) -> None:
    run = testhosts(2)
    cut_host, steady_host = run.hosts
    cut = make_driver("cut", cut_host, timeouts=FAST)
    steady = make_driver("steady", steady_host, timeouts=FAST)
    node = await cut.start(NodeLaunch("survivor", "job", "sleep 300"))

    with run.link_cut(cut_host):
        with pytest.raises(HostUnreachable, match="^host cut: no answer from"):
            await cut.list()
        with pytest.raises(HostUnreachable):
            await cut.exec("true", timeout=1)
        assert "survivor" not in await steady.list()  # the other host answers meanwhile

    async def listed_again() -> dict[str, object]:
        return dict(await cut.list())

    nodes = await wait_until(listed_again, "the driver reconnects after the link is back")
    assert nodes["survivor"] == node  # the node ran on, untouched, while the host was cut off


async def test_many_drivers_at_once_stay_under_sshds_handshake_limit(
    testhosts: Callable[..., TestHostRun], make_driver: DriverFactory
) -> None:
    # sshd's default MaxStartups drops handshakes past 10 in flight; 40 drivers (a controller,
    # fleet commands...) connecting at once must all get in.
    host = testhosts(1, max_startups="10:30:100").hosts[0]
    drivers = [make_driver(f"d{index}", host) for index in range(40)]
    outcomes = await asyncio.gather(*(driver.list() for driver in drivers), return_exceptions=True)
    assert [outcome for outcome in outcomes if isinstance(outcome, BaseException)] == []


async def test_two_host_entries_on_one_machine_adopt_only_their_own_nodes(
    testhosts: Callable[..., TestHostRun], make_driver: DriverFactory
) -> None:
    host = testhosts(1).hosts[0]
    first = make_driver("first", host, base_dir=str(host.base_dir / "first"))
    second = make_driver("second", host, base_dir=str(host.base_dir / "second"))
    node = await first.start(NodeLaunch("mine", "job", "sleep 300"))
    (host.base_dir / "first" / "run" / "mine.json").unlink()  # as if the controller died before writing it

    assert await second.list() == {}  # a fresh driver scans for untracked nodes: not first's
    restarted_first = make_driver("first", host, base_dir=str(host.base_dir / "first"))
    assert await restarted_first.list() == {"mine": node}
