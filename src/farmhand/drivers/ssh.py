"""The SSH driver: nodes are processes on a remote Linux host, reached with asyncssh.

It mirrors the local driver on the remote host, so a node behaves the same wherever it runs:
it starts in its own session with stdin closed, output appended to
``<base_dir>/logs/<node>.log``, a pidfile ``<base_dir>/run/<node>.json`` holding pid and
process start time (the value psutil's ``create_time`` gives), and an environment tagged with
``FARMHAND_FARM``/``FARMHAND_NODE``/``FARMHAND_HOST``. A restarted controller adopts what runs from the
pidfiles (and, on its first ``list()``, from the environment tags of processes that have no
pidfile yet). ``base_dir`` defaults to ``~/.farmhand/<farm_id>`` on the host.

Agentless: every call is one shell command over one long-lived connection
(:mod:`farmhand.drivers.ssh_session`); the scripts live in :mod:`farmhand.drivers.ssh_remote`.
Differences from the local driver, both forced by not being the nodes' parent: ``exit_code``
of a dead node is always ``None``, and relative paths in ``put_file`` and the working
directory of ``exec`` are the remote user's login directory (as with ``ssh``/``scp``).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from farmhand.drivers import ssh_remote as remote
from farmhand.drivers.base import (
    FARM_ENV,
    HOST_ENV,
    NODE_ENV,
    Driver,
    ExecResult,
    HostMetrics,
    NodeLaunch,
    NodeMetrics,
    RunningNode,
)
from farmhand.drivers.local import shell_command
from farmhand.drivers.ssh_session import Completed, Runner, SshSession, SshTimeouts
from farmhand.errors import DriverError
from farmhand.spec.models import HostSpec

PORT_TRIES = 100


class SshDriver(Driver):
    kind = "ssh"

    def __init__(
        self,
        name: str,
        spec: HostSpec,
        state_dir: Path,
        farm_id: str,
        *,
        timeouts: SshTimeouts | None = None,
    ) -> None:
        if not spec.address:
            raise DriverError(name, 'an ssh host needs address = "..."')
        self.name = name
        self.address = spec.address
        self.farm_id = farm_id
        self.state_dir = state_dir
        self.timeouts = timeouts or SshTimeouts()
        self._base_expression = remote.base_dir_expression(spec.base_dir, farm_id)
        self._session = SshSession(name, spec, self.timeouts, self._hello)
        self._facts: remote.HostFacts | None = None
        self._adopted = False
        self._cpu_samples: dict[tuple[str, int, float], tuple[int, float]] = {}

    def __repr__(self) -> str:
        return f"<SshDriver {self.name} {self._session!r}>"

    @property
    def base_dir(self) -> str | None:
        """The absolute base directory on the host, once connected."""
        return self._facts.base_dir if self._facts else None

    async def start(self, launch: NodeLaunch) -> RunningNode:
        env = {
            **launch.env,
            FARM_ENV: self.farm_id,
            NODE_ENV: launch.node_id,
            HOST_ENV: self.name,
        }
        if launch.port is not None:
            env.setdefault("PORT", str(launch.port))
        command = shell_command(launch.command)
        result = await self._script(lambda facts: remote.start_script(facts, launch, command, env))
        if result.exit_status == remote.WORKDIR_MISSING:
            raise DriverError(self.name, f"node {launch.node_id}: workdir {launch.workdir} does not exist")
        if result.exit_status != 0:
            raise DriverError(self.name, f"node {launch.node_id}: cannot start: {_text(result)}")
        try:
            pid, started_at = remote.parse_start(result.stdout.decode())
        except ValueError:
            raise DriverError(self.name, f"node {launch.node_id}: unexpected answer {_text(result)!r}") from None
        return RunningNode(launch.node_id, pid, started_at)

    async def signal(self, node: RunningNode, signame: str) -> None:
        result = await self._script(lambda facts: remote.signal_script(facts, node, signame))
        self._check(result, f"signal {signame} to node {node.node_id}")

    async def list(self) -> dict[str, RunningNode]:
        adopt = not self._adopted
        result = await self._script(lambda facts: remote.list_script(facts, self.farm_id, self.name, adopt=adopt))
        self._check(result, "list nodes")
        self._adopted = True
        found = remote.parse_list(result.stdout.decode(errors="replace"))
        alive = {(n.node_id, n.pid, n.started_at) for n in found.values() if n.alive}
        self._cpu_samples = {key: value for key, value in self._cpu_samples.items() if key in alive}
        return found

    async def node_metrics(self, nodes: Sequence[RunningNode]) -> dict[str, NodeMetrics]:
        if not nodes:
            return {}
        result = await self._script(lambda facts: remote.metrics_script(facts, nodes))
        self._check(result, "read node metrics")
        samples = remote.parse_metrics(result.stdout.decode(errors="replace"))
        ticks_per_second = self._facts.clock_ticks if self._facts else 100
        metrics: dict[str, NodeMetrics] = {}
        seen: dict[tuple[str, int, float], tuple[int, float]] = {}
        by_id = {node.node_id: node for node in nodes}
        for node_id, sample in samples.items():
            node = by_id[node_id]
            key = (node_id, node.pid, node.started_at)
            seen[key] = (sample.cpu_ticks, sample.uptime)
            metrics[node_id] = NodeMetrics(
                _cpu_percent(self._cpu_samples.get(key), sample, ticks_per_second),
                sample.rss_bytes,
                sample.connections,
            )
        # psutil-like: the first call for a process says 0.0, later ones the use since the
        # last; samples of nodes that died are dropped here and by list().
        self._cpu_samples = {
            **{key: value for key, value in self._cpu_samples.items() if key[0] not in by_id},
            **seen,
        }
        return metrics

    async def host_metrics(self) -> HostMetrics:
        result = await self._script(lambda facts: remote.HOST_METRICS_SCRIPT)
        self._check(result, "read host metrics")
        try:
            load, cpus, total, available = remote.parse_host_metrics(result.stdout.decode())
        except (KeyError, ValueError):
            raise DriverError(self.name, f"unexpected host metrics {_text(result)!r}") from None
        return HostMetrics(load, cpus, total, available)

    async def exec(self, command: str, timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
        result = await self._script(
            lambda facts: remote.exec_script(command, timeout, env),
            timeout=timeout + self.timeouts.call,
            login_shell=True,
        )
        if result.exit_status in (124, 137) and remote.EXEC_TIMED_OUT in result.stderr:
            return ExecResult(124, b"", f"timed out after {timeout}s".encode())
        return ExecResult(result.exit_status, result.stdout, result.stderr)

    async def put_file(self, data: bytes, path: str, mode: int = 0o644) -> None:
        token = secrets.token_hex(4)
        result = await self._script(
            lambda facts: remote.put_file_script(path, mode, token),
            input=data,
            timeout=self.timeouts.call + len(data) / 1_000_000,
        )
        self._check(result, f"write {path}")

    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        result = await self._script(lambda facts: remote.read_log_script(facts, node_id, offset, limit))
        self._check(result, f"read the log of node {node_id}")
        return result.stdout

    async def port_is_free(self, port: int) -> bool:
        table = await self._ports()
        if port < table.unprivileged_start and self._facts is not None and self._facts.uid != 0:
            return False
        return port not in table.used

    async def pick_free_port(self, avoid: set[int]) -> int:
        table = await self._ports()
        low, high = table.ephemeral
        for _ in range(PORT_TRIES):
            port = random.randint(low, high)
            if port not in avoid and port not in table.used:
                return port
        raise DriverError(self.name, f"no free port found after {PORT_TRIES} tries")

    async def close(self) -> None:
        await self._session.close()

    async def _ports(self) -> remote.PortTable:
        result = await self._script(lambda facts: remote.PORTS_SCRIPT)
        self._check(result, "read the ports in use")
        return remote.parse_ports(result.stdout.decode())

    async def _hello(self, run: Runner) -> None:
        """On every new connection: make the base directory and read the host's constants
        (they change when the host reboots, and the connection is new then)."""
        result = await run(_sh(remote.hello_script(self._base_expression)))
        if result.exit_status == remote.HELLO_FAILED:
            directory, reason = remote.hello_failure(result.stdout.decode(errors="replace"))
            raise DriverError(self.name, f"cannot use base directory {directory}: {reason}")
        if result.exit_status != 0:
            raise DriverError(self.name, f"cannot prepare the host: {_text(result)}")
        try:
            self._facts = remote.parse_hello(result.stdout.decode())
        except (KeyError, ValueError):
            raise DriverError(self.name, f"unexpected answer while preparing: {_text(result)!r}") from None

    async def _script(
        self,
        build: Callable[[remote.HostFacts], str],
        *,
        timeout: float | None = None,
        input: bytes | None = None,
        login_shell: bool = False,
    ) -> Completed:
        """Connect if needed, build the script with the host's constants, run it.

        ``login_shell``: the script is written for the login shell (``remote.exec_script``)
        and goes to it as it is when that shell is POSIX, saving one exec per call."""
        await self._session.open()
        facts = self._facts
        assert facts is not None
        try:
            script = build(facts)
        except remote.RemoteScriptError as error:
            raise DriverError(self.name, str(error)) from None
        if not (login_shell and facts.posix_login):
            script = _sh(script)
        return await self._session.run(script, timeout=timeout or self.timeouts.call, input=input)

    def _check(self, result: Completed, doing: str) -> None:
        if result.exit_status != 0:
            raise DriverError(self.name, f"cannot {doing}: {_text(result)}")


def _sh(script: str) -> str:
    """Run under /bin/sh whatever the user's login shell is (the scripts are POSIX sh)."""
    return "exec /bin/sh -c " + remote.q(script)


def _text(result: Completed) -> str:
    text = (result.stderr or result.stdout).decode(errors="replace").strip()
    return text or f"exit status {result.exit_status}"


def _cpu_percent(
    previous: tuple[int, float] | None, sample: remote.ProcessSample, ticks_per_second: int
) -> float:
    if previous is None or sample.uptime <= previous[1]:
        return 0.0
    busy = (sample.cpu_ticks - previous[0]) / ticks_per_second
    return round(max(busy, 0.0) / (sample.uptime - previous[1]) * 100, 1)
