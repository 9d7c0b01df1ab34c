"""Test hosts: a pytest plugin (and a script for people) that makes N Linux network
namespaces joined by a bridge, each running its own sshd with throwaway keys.

Why: the SSH driver and everything built on it (placement, host failure, migration) must be
proven against real sshd processes on separately addressed hosts, without touching any
machine but this one. Addresses are in 10.213.0.0/16 and exist only on the run's bridge and
in its namespaces; the root namespace (where the controller and load balancers run) reaches
every host. Each host has its own sshd config, host key, log, base directory and PID
namespace (its sshd is the init), so files written over SSH and the processes a host sees are
its own although the hosts share one filesystem and kernel. Logins go to the user
``farmhand-test`` (made once, /bin/sh, empty rc files). Needs root, iproute2 and Debian's
openssh-server; tests that use the fixtures skip without root.

Fixtures (import them into a conftest.py, as tests/integration/hosts/conftest.py does):

``testhosts``
    a factory: ``run = testhosts(3)`` makes hosts h1..h3 and returns a :class:`TestHostRun`
    (``run.hosts``, ``run.host("h2")``, ``run.key_file``, ``run.known_hosts``,
    ``run.wrong_key_file``, ``run.unused_address``, ``run.cut(host)`` / ``run.restore(host)``
    / ``with run.link_cut(host):``, ``run.run_in(host, *argv)``). Each :class:`TestHost` has
    ``address``, ``port``, ``user``, ``key_file``, ``known_hosts``, ``public_key`` (to pin),
    ``base_dir``, ``netns``, ``link`` and ``spec(**overrides)`` → a ``HostSpec``.
    Everything is removed when the test ends, also on failure.
    ``testhosts(n, max_startups="10:30:100")`` keeps sshd's default handshake limit (it is
    raised otherwise, so parallel tests are not dropped).
    ``testhosts(n, root_login=True)`` lets uid 0 log in too, as ``ROOT_USER``
    (``host.spec_fields(user=ROOT_USER)``), for what needs root on a host (keepalived).
``three_hosts``
    ``testhosts(3)`` for one test.
``module_host``
    one host shared by a test module (suites that need a reachable sshd, not a fresh one).

People: ``scripts/testhosts up 3`` prints a farm.toml snippet; ``scripts/testhosts down``
removes manual runs and leftovers of crashed runs; ``scripts/testhosts list`` shows runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testhosts_net import NET_PREFIX, ROOT_USER, TestHost, TestHostRun, create_run  # noqa: E402
from testhosts_sweep import MANUAL_OWNER, destroy_all, list_runs  # noqa: E402

__all__ = [
    "ROOT_USER",
    "TestHost",
    "TestHostRun",
    "create_run",
    "destroy_all",
    "module_host",
    "testhosts",
    "three_hosts",
    "wait_until",
]

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = 20,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail with ``what``
    after ``timeout`` seconds. Exceptions from ``probe`` count as "not yet" (a host that is
    coming back raises until it answers); the last one is named in the failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await probe()
        except Exception as error:  # "not yet"; the last one is reported
            last_error, result = error, None
        if result:
            return result
        if loop.time() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"not true after {timeout}s: {what}{detail}")
        await asyncio.sleep(interval)


try:
    import pytest
except ImportError:  # the script for people works without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _need_root() -> None:
        if os.geteuid() != 0:
            pytest.skip("test hosts need root (network namespaces, sshd)")

    @pytest.fixture
    def testhosts() -> Iterator[Callable[..., TestHostRun]]:
        """A factory: ``testhosts(n)`` makes a run of n hosts, removed when the test ends
        (``testhosts(n, max_startups="10:30:100")`` gives sshd's default handshake limit)."""
        _need_root()
        runs: list[TestHostRun] = []

        def make(count: int, **options: Any) -> TestHostRun:
            run = create_run(count, **options)
            runs.append(run)
            return run

        try:
            yield make
        finally:
            for run in runs:
                run.close()

    @pytest.fixture
    def three_hosts(testhosts: Callable[..., TestHostRun]) -> TestHostRun:
        """Three hosts h1, h2, h3 for one test."""
        return testhosts(3)

    @pytest.fixture(scope="module")
    def module_host() -> Iterator[TestHost]:
        """One host shared by a module's tests."""
        _need_root()
        run = create_run(1)
        try:
            yield run.hosts[0]
        finally:
            run.close()


def main(argv: list[str]) -> int:
    """``up N`` / ``down`` / ``list`` for people (scripts/testhosts)."""
    if not argv or argv[0] not in ("up", "down", "list"):
        print("usage: scripts/testhosts up N | down | list", file=sys.stderr)
        return 2
    if argv[0] == "up":
        count = int(argv[1]) if len(argv) > 1 else 3
        run = create_run(count, owner=MANUAL_OWNER)
        print(f"# test hosts {run.name}: {count} hosts on {NET_PREFIX}.{run.subnet}.0/24")
        print("# remove them with: scripts/testhosts down\n")
        print(run.farm_toml())
    elif argv[0] == "down":
        for name in destroy_all(stale_only=False):
            print(f"removed {name}")
    else:
        for name, owner in list_runs():
            print(name, owner)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
