"""The local driver: nodes are processes on this machine.

Nodes start in their own session (so a Ctrl-C at the controller's terminal never reaches
them, and a stop signal reaches the whole process group), with stdin closed and output
appended to ``<base>/logs/<node>.log``. A pidfile ``<base>/run/<host>/<node>.json`` holding pid and
process start time is written right after the fork; together they identify the process even
after a controller restart, and a recycled pid never passes for a node. The narrow window
between fork and pidfile is closed by tagging every node's environment with the farm id:
the first ``list()`` after a restart finds such processes and writes their pidfiles. (Several
"local" hosts may share a machine, and a node name can be reused on another host, so nodes
carry the host's name too and each host lists only its own pidfiles; without their own
``base_dir`` they share the logs folder, where a name's log holds each node that had it.)

Asking about nodes is cheap because the controller asks every second: ``list()`` trusts the
exit status of the processes it started itself (a child it has not reaped cannot be a
recycled pid) and reads ``/proc/PID/stat`` only for adopted ones, pidfiles are parsed again
only when they change, and ``node_metrics()`` reads each node's stat file once and the
kernel's TCP tables once per call, and only while connections are wanted
(``farmhand.drivers.procfs``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from farmhand.drivers import procfs
from farmhand.drivers.base import (
    FARM_ENV,
    HOST_ENV,
    NODE_ENV,
    OPTIONAL_NODE_METRICS,
    Driver,
    ExecResult,
    HostMetrics,
    NodeLaunch,
    NodeMetrics,
    RunningNode,
)
from farmhand.errors import DriverError
from farmhand.spec.models import HostSpec

START_TIME_TOLERANCE = 0.05


class LocalDriver(Driver):
    kind = "local"

    def __init__(self, name: str, spec: HostSpec, state_dir: Path, farm_id: str) -> None:
        self.name = name
        self.address = "127.0.0.1"
        self.farm_id = farm_id
        base = Path(spec.base_dir) if spec.base_dir else state_dir
        self.run_dir = base / "run" / name
        self.log_dir = base / "logs"
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private, as the state folder
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._orphans_scanned = False
        self._proc = procfs.ProcReader()
        self._cpu = procfs.CpuMeter()
        self._pidfiles: dict[str, tuple[tuple[int, int, int], Path, RunningNode | None]] = {}
        """Pidfile name -> ((inode, mtime ns, size), path, what it said): read again only when changed."""
        self._wanted = OPTIONAL_NODE_METRICS

    def __repr__(self) -> str:
        return f"<LocalDriver {self.name} [children: {len(self._children)}]>"

    async def start(self, launch: NodeLaunch) -> RunningNode:
        workdir = launch.workdir
        if workdir and not Path(workdir).is_dir():
            raise DriverError(self.name, f"node {launch.node_id}: workdir {workdir} does not exist")
        env = {**os.environ, **launch.env, FARM_ENV: self.farm_id, NODE_ENV: launch.node_id, HOST_ENV: self.name}
        if launch.port is not None:
            env.setdefault("PORT", str(launch.port))
        log_path = self.log_dir / f"{launch.node_id}.log"
        try:
            # 0600: a node's output is its owner's to read (the state folder's rule)
            with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
                child = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, and Popen keeps the exit code
                    ["/bin/sh", "-c", shell_command(launch.command)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as error:
            raise DriverError(self.name, f"node {launch.node_id}: cannot start: {error}") from error
        self._children[launch.node_id] = child
        started_at = self._start_time(child.pid) or 0.0
        node = RunningNode(launch.node_id, child.pid, started_at)
        self._write_pidfile(node)
        return node

    async def signal(self, node: RunningNode, signame: str) -> None:
        if not self._is_same_process(node):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.pid, getattr(signal, "SIG" + signame))

    async def list(self) -> dict[str, RunningNode]:
        if not self._orphans_scanned:
            self._adopt_untracked()
            self._orphans_scanned = True
        self._proc.begin()
        found: dict[str, RunningNode] = {}
        for pidfile, node in self._read_pidfiles():
            child = self._children.get(node.node_id)
            ours = child is not None and child.pid == node.pid
            exit_code = child.poll() if child is not None and ours else None
            if exit_code is None and (ours or self._is_same_process(node)):
                found[node.node_id] = node  # an unreaped child of ours is the node itself
                continue
            found[node.node_id] = RunningNode(node.node_id, node.pid, node.started_at, False, exit_code)
            pidfile.unlink(missing_ok=True)
            self._pidfiles.pop(pidfile.name, None)
            self._children.pop(node.node_id, None)
        return found

    def want_metrics(self, names: frozenset[str]) -> None:
        self._wanted = names

    async def node_metrics(self, nodes: builtins.list[RunningNode]) -> dict[str, NodeMetrics]:
        """One pass: each node's stat file once, the TCP tables at most once (and only while
        connections are wanted)."""
        self._proc.begin()
        connections_wanted = "connections" in self._wanted
        now = time.monotonic()
        metrics = {}
        for node in nodes:
            stat = self._proc.stat(node.pid)
            if stat is None or not self._same_start(node, stat):
                continue  # gone, a zombie or a recycled pid: a dead node has no metrics
            connections = self._proc.tcp_connections(node.pid) if connections_wanted else None
            if connections_wanted and connections is None:
                continue  # it ended between the two reads
            cpu = self._cpu.percent(node.pid, stat, now)
            metrics[node.node_id] = NodeMetrics(cpu, stat.rss_pages * procfs.PAGE_SIZE, connections)
        self._cpu.keep_only(n.pid for n in nodes)
        return metrics

    async def host_metrics(self) -> HostMetrics:
        memory = psutil.virtual_memory()
        return HostMetrics(os.getloadavg()[0], os.cpu_count() or 1, memory.total, memory.available)

    async def exec(self, command: str, timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
        try:
            return await run_shell(command, timeout, env=env)
        except TimeoutError:
            return ExecResult(124, b"", f"timed out after {timeout}s".encode())

    async def put_file(self, data: bytes, path: str, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
        temporary.write_bytes(data)
        os.chmod(temporary, mode)
        os.replace(temporary, target)

    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        try:
            with open(self.log_dir / f"{node_id}.log", "rb") as log:
                log.seek(offset)
                return log.read(limit)
        except FileNotFoundError:
            return b""

    async def port_is_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
        return True

    async def pick_free_port(self, avoid: set[int]) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port: int = probe.getsockname()[1]
            if port not in avoid and await self.port_is_free(port):
                return port
        raise DriverError(self.name, "no free port found after 100 tries")

    def _write_pidfile(self, node: RunningNode) -> None:
        path = self.run_dir / f"{node.node_id}.json"
        temporary = path.with_suffix(".tmp")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(json.dumps({"node": node.node_id, "pid": node.pid, "started_at": node.started_at}))
        os.replace(temporary, path)

    def _read_pidfiles(self) -> builtins.list[tuple[Path, RunningNode]]:
        """Every readable pidfile and what it says, parsing only files that changed."""
        found = []
        seen = set()
        try:
            entries = builtins.list(os.scandir(self.run_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            try:
                info = entry.stat()
            except FileNotFoundError:
                continue
            seen.add(entry.name)
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._pidfiles.get(entry.name)
            if cached is None or cached[0] != key:
                path = Path(entry.path)
                cached = self._pidfiles[entry.name] = (key, path, _read_pidfile(path))
            if cached[2] is not None:
                found.append((cached[1], cached[2]))
        for name in [n for n in self._pidfiles if n not in seen]:
            del self._pidfiles[name]
        return found

    def _start_time(self, pid: int) -> float | None:
        self._proc.begin()
        stat = self._proc.stat(pid)
        return procfs.start_time(stat, self._proc.boot_time) if stat is not None else None

    def _same_start(self, node: RunningNode, stat: procfs.ProcStat) -> bool:
        """Whether ``stat`` is the node's own process, still running (not a recycled pid)."""
        started = procfs.start_time(stat, self._proc.boot_time)
        return not stat.gone and abs(started - node.started_at) < START_TIME_TOLERANCE

    def _is_same_process(self, node: RunningNode) -> bool:
        stat = self._proc.stat(node.pid)
        return stat is not None and self._same_start(node, stat)

    def _adopt_untracked(self) -> None:
        """Write pidfiles for this farm's node processes that have none (a controller that
        died between fork and pidfile); then ``list()`` reports them like any other node."""
        known = {p.stem for p in self.run_dir.glob("*.json")}
        for process in psutil.process_iter(["pid", "create_time"]):
            try:
                environ = process.environ()
            except (psutil.Error, OSError):
                continue
            node_id = environ.get(NODE_ENV)
            if (environ.get(FARM_ENV) != self.farm_id or environ.get(HOST_ENV, self.name) != self.name
                    or not node_id or node_id in known):
                continue
            try:
                parent_env = process.parent().environ() if process.parent() else {}
            except (psutil.Error, OSError):
                parent_env = {}
            if parent_env.get(NODE_ENV) == node_id:
                continue  # a child of the node itself, not the node
            self._write_pidfile(RunningNode(node_id, process.pid, process.info["create_time"]))
            known.add(node_id)


async def run_shell(command: str, timeout: float, *, env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> ExecResult:
    """Run ``command`` with /bin/sh on this machine and wait for it. Past ``timeout`` its whole
    process group is killed (a shell's children too) and ``TimeoutError`` raised."""
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return ExecResult(process.returncode or 0, stdout, stderr)


def shell_command(command: str) -> str:
    """``exec`` a simple command so the node's pid is the program's own (its CPU and memory
    are then the node's); a compound one keeps its shell, and the process group covers it."""
    compound = any(token in command for token in (";", "&", "|", "\n", "(", "`", "$("))
    return command if compound else "exec " + command


def _read_pidfile(path: Path) -> RunningNode | None:
    try:
        data = json.loads(path.read_text())
        return RunningNode(str(data["node"]), int(data["pid"]), float(data["started_at"]))
    except (OSError, ValueError, KeyError):
        return None
