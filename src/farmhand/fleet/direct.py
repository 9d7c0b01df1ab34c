"""Executors that reach hosts themselves, from the farm file's host tables, for when no
controller runs (``farmhand exec`` then connects on its own, like clush).

SSH goes through the drivers' own session (``SshSession``: pinned host keys or known_hosts,
the farm file's key, curve25519 first, a bounded number of handshakes per host) without the
driver's base-directory preparation, so a command costs one handshake and one channel. The
local host runs commands with /bin/sh directly. Fake hosts have no shell and are refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from farmhand.drivers import ssh_remote as remote
from farmhand.drivers.base import ExecResult
from farmhand.drivers.local import run_shell
from farmhand.drivers.ssh_session import Runner, SshSession, SshTimeouts
from farmhand.errors import RequestError
from farmhand.spec.models import FarmSpec, HostSpec

if TYPE_CHECKING:
    from farmhand.fleet.workers import WorkerExecutor, WorkerPool

TIMEOUT_GRACE = 5.0
"""Beyond a command's timeout, how long the channel may take to bring back its answer."""


async def _no_preparation(_: Runner) -> None:
    return None


class SshExecutor:
    def __init__(self, name: str, spec: HostSpec, connect_timeout: float) -> None:
        self.session = SshSession(name, spec, SshTimeouts(connect=connect_timeout, backoff_initial=0.0),
                                  _no_preparation)

    async def exec(self, command: str, timeout: float) -> ExecResult:
        script = remote.exec_script(command, timeout, None)
        result = await self.session.run(script, timeout=timeout + TIMEOUT_GRACE)
        if result.exit_status in (124, 137) and remote.EXEC_TIMED_OUT in result.stderr:
            return ExecResult(124, result.stdout, f"timed out after {timeout:g}s".encode())
        return ExecResult(result.exit_status, result.stdout, result.stderr)

    async def close(self) -> None:
        await self.session.close()


class LocalExecutor:
    async def exec(self, command: str, timeout: float) -> ExecResult:
        try:
            return await run_shell(command, timeout)
        except TimeoutError:
            return ExecResult(124, b"", f"timed out after {timeout:g}s".encode())

    async def close(self) -> None:
        return None


Executor: TypeAlias = "SshExecutor | LocalExecutor | WorkerExecutor"


@dataclass
class DirectFleet:
    """The executors for some hosts of a farm file; close them when done."""

    executors: dict[str, Executor]
    pool: WorkerPool | None = field(default=None)

    async def close(self) -> None:
        """Close every connection at once (each may wait for its server's goodbye)."""
        closing = [executor.close() for executor in self.executors.values()]
        if self.pool is not None:
            closing.append(self.pool.close())
        await asyncio.gather(*closing, return_exceptions=True)


def direct_fleet(spec: FarmSpec, hosts: list[str], connect_timeout: float,
                 pool: WorkerPool | None = None) -> DirectFleet:
    """Executors for ``hosts``; SSH hosts that ``pool``'s workers run get its proxies
    (``fleet.workers``: the handshakes spread over the CPU's cores)."""
    executors: dict[str, Executor] = {}
    for name in hosts:
        host = spec.hosts[name]
        if pool is not None and name in pool.executors:
            executors[name] = pool.executors[name]
        elif host.driver == "ssh":
            executors[name] = SshExecutor(name, host, connect_timeout)
        elif host.driver == "local":
            executors[name] = LocalExecutor()
        else:
            raise RequestError(f"host {name} is a {host.driver} host: it has no shell to run commands in", "target")
    return DirectFleet(executors, pool)
