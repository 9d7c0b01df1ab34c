"""The SSH driver's exec on a real host runs as few programs as it can (login shell, timeout,
the command; /bin/sh only for a shell command line) and means what ``sh -c`` means: the
environment arrives whole, a plain command is still killed at its timeout, a missing program
still answers 127."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from farmhand.drivers.ssh import SshDriver
from testhosts import TestHostRun, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
async def driver(three_hosts: TestHostRun, tmp_path: Path) -> AsyncIterator[SshDriver]:
    host = three_hosts.hosts[0]
    made = SshDriver(host.name, host.spec(), tmp_path, f"lean-{uuid.uuid4().hex[:8]}")
    try:
        yield made
    finally:
        await made.close()


def _parents(listing: bytes) -> list[str]:
    """The names of ``ps``'s own process and its ancestors, from ``ps -e -o pid=,ppid=,comm=``."""
    rows = {}
    for line in listing.decode().splitlines():
        pid, ppid, comm = line.split(None, 2)
        rows[pid] = (ppid, comm.strip())
    pid = next(p for p, (_, comm) in rows.items() if comm == "ps")
    chain = []
    while pid in rows:
        ppid, comm = rows[pid]
        chain.append(comm)
        pid = ppid
    return chain


async def test_a_plain_command_runs_under_timeout_alone(driver: SshDriver) -> None:
    plain = await driver.exec("ps -e -o pid=,ppid=,comm=", timeout=10)
    assert plain.exit_code == 0, plain.stderr
    assert _parents(plain.stdout)[:3] == ["ps", "timeout", "sshd"], "no /bin/sh, no env between them"
    assert driver._facts is not None and driver._facts.login_shell == "/bin/sh"
    shell_line = await driver.exec("ps -e -o pid=,ppid=,comm= | cat", timeout=10)
    assert _parents(shell_line.stdout)[:4] == ["ps", "sh", "timeout", "sshd"]


async def test_the_environment_arrives_whole(driver: SshDriver) -> None:
    value = "a 'b' \"c\" $d `e` \\f\nsecond line"
    result = await driver.exec('printf %s "$ODD"; printf / ; printf %s "$PLAIN"', timeout=10,
                               env={"ODD": value, "PLAIN": "x"})
    assert (result.exit_code, result.stdout.decode()) == (0, value + "/x")
    plain = await driver.exec("printenv ODD", timeout=10, env={"ODD": value})
    assert plain.stdout.decode() == value + "\n"


async def test_a_plain_command_is_killed_at_its_timeout(driver: SshDriver) -> None:
    marker = "61.4" + uuid.uuid4().hex[:6].translate(str.maketrans("abcdef", "123456"))
    result = await driver.exec(f"sleep {marker}", timeout=0.5)
    assert (result.exit_code, result.stderr) == (124, b"timed out after 0.5s")

    async def gone() -> bool:
        found = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", f"sleep {marker}"], capture_output=True)
        return found.returncode == 1

    await wait_until(gone, "the command was killed")


async def test_a_missing_program_answers_127(driver: SshDriver) -> None:
    result = await driver.exec("no-such-program-here --flag", timeout=10)
    assert result.exit_code == 127 and b"no-such-program-here" in result.stderr
