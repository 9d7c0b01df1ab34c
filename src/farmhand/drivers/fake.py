"""The fake driver: hosts and nodes simulated in the controller's own memory.

A ``driver = "fake"`` host runs no process and opens no socket. Its nodes go through the same
states as real ones (started, listed, signalled, crashed and reported dead once, sampled), so
a farm of thousands of nodes runs on one machine through the real controller, store, API and
CLI: scale tests, crash storms, placement at size. How the nodes behave comes from the host's
``fake = { ... }`` options (``farmhand.spec.fake.FakeOptions``): start latency, boot time,
crash rate, health flapping, metrics.

Where the simulation lives: a module-level *world* per farm id, holding one ``FakeHost`` per
host name. A driver is only a view of its host in that world, so the controller may close a
driver and make a new one for the same host (a reload) and find the same nodes running, as a
restarted controller adopts real nodes. The world lives as long as the controller's process:
**a restarted controller finds no fake node** (they were never processes), so controller
crash-and-adopt tests need the local or ssh driver.

Tests reach the world to inject faults::

    world = fake.world(farm_id)
    world.crash("web-3")            # dies now, reported dead once, exit code 1
    world.set_sick("web-4", True)   # alive, but fails its health checks
    world.cut("sim-2")              # the host stops answering (HostUnreachable)

Nothing here uses the network: a node's port comes from a per-host counter and is "in use"
only in the world; health checks are answered by ``simulated_health`` without a socket; pids
are numbers above Linux's largest pid, so no real process can ever be mistaken for, or
signalled as, a fake node.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import math
import random
import signal as signals
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.drivers.base import (
    Driver,
    ExecResult,
    HostMetrics,
    NodeLaunch,
    NodeMetrics,
    RunningNode,
)
from farmhand.errors import DriverError, HostUnreachable
from farmhand.spec.fake import FakeOptions
from farmhand.spec.models import HostSpec

FIRST_PID = 10_000_000
"""Above Linux's largest pid (2**22): a fake pid is never a real process."""
PORTS = range(20_000, 60_000)
HARMLESS_SIGNALS = frozenset({"HUP", "USR1", "USR2", "WINCH", "CONT", "CHLD", "URG", "PIPE", "ALRM"})
"""Signals a fake node survives (the usual "reload" and "dump" signals); the others stop it."""
SYSTEM_SHARE = 10
"""A fake host's system keeps 1/10 of its memory: an empty host is not entirely free."""
ADDRESS = "127.0.0.1"
"""Where a fake node "listens". Nothing does: a balancer in front of fake nodes is refused."""


@dataclass
class FakeNode:
    """One simulated node. ``crash_at`` is drawn at start; a node that has ended keeps its
    ``exit_code`` until ``list`` has reported it once."""

    node_id: str
    role: str
    pid: int
    port: int | None
    started_at: float
    crash_at: float
    env: Mapping[str, str]
    alive: bool = True
    exit_code: int | None = None
    sick: bool = False

    def running(self) -> RunningNode:
        return RunningNode(self.node_id, self.pid, self.started_at, self.alive, self.exit_code)


@dataclass
class FakeHost:
    """The simulated state of one host, shared by every driver made for it."""

    name: str
    options: FakeOptions
    now: Callable[[], float]
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    logs: dict[str, bytearray] = field(default_factory=dict)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    """Every command ``exec`` was asked to run, in order (tests read it)."""
    cut_off: bool = False
    crash_draws: random.Random = field(init=False)
    flap_draws: random.Random = field(init=False)
    next_port: int = PORTS.start
    next_crash: float = math.inf
    """The earliest drawn crash among live nodes: most calls need not look at every node."""
    changes: int = 0
    """Grows whenever what ``list`` answers changes (a node started, ended or reported gone)."""

    def __post_init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        """Separate generators, so how often checks run never changes when nodes crash."""
        self.crash_draws = random.Random(f"{self.options.seed}/{self.name}/crash")
        self.flap_draws = random.Random(f"{self.options.seed}/{self.name}/flap")

    def add(self, node: FakeNode) -> None:
        self.nodes[node.node_id] = node
        self.changes += 1
        self.next_crash = min(self.next_crash, node.crash_at)

    def settle(self) -> None:
        """Let every node whose drawn crash time has passed die now."""
        now = self.now()
        if now < self.next_crash:
            return
        self.next_crash = math.inf
        for node in self.nodes.values():
            if node.alive and node.crash_at <= now:
                self.end(node, self.options.crash_exit_code, "crashed (simulated)")
            elif node.alive:
                self.next_crash = min(self.next_crash, node.crash_at)

    def end(self, node: FakeNode, exit_code: int, why: str) -> None:
        node.alive, node.exit_code = False, exit_code
        self.changes += 1
        self.say(node.node_id, f"{why}; exit code {exit_code}")

    def say(self, node_id: str, line: str) -> None:
        self.logs.setdefault(node_id, bytearray()).extend(f"[fake {self.name}] {line}\n".encode())

    def ports_in_use(self) -> set[int]:
        return {n.port for n in self.nodes.values() if n.alive and n.port is not None}

    def check_reachable(self) -> None:
        if self.cut_off:
            raise HostUnreachable(self.name, "no answer (cut off by the fake world)")


class FakeWorld:
    """Every simulated host of one farm, by name; what tests poke to make faults happen."""

    def __init__(self, farm_id: str) -> None:
        self.farm_id = farm_id
        self.hosts: dict[str, FakeHost] = {}
        self.now: Callable[[], float] = time.time
        """Wall time, like a real process's start time; a test may put its own clock here."""
        self._pids = itertools.count(FIRST_PID)

    def __repr__(self) -> str:
        alive = sum(1 for h in self.hosts.values() for n in h.nodes.values() if n.alive)
        return f"<FakeWorld {self.farm_id} [hosts: {len(self.hosts)} | nodes alive: {alive}]>"

    def host(self, name: str, options: FakeOptions | None = None) -> FakeHost:
        """The host ``name``, made on first use; new ``options`` (a reload) apply from now on."""
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = FakeHost(name, options or FakeOptions(), lambda: self.now())
        elif options is not None and options != host.options:
            seed_changed = options.seed != host.options.seed
            host.options = options
            if seed_changed:
                host.reseed()
        return host

    def next_pid(self) -> int:
        return next(self._pids)

    def find(self, node_id: str) -> tuple[FakeHost, FakeNode]:
        """The live node ``node_id`` and its host; KeyError names it when no host runs it."""
        for host in self.hosts.values():
            host.settle()
            node = host.nodes.get(node_id)
            if node is not None and node.alive:
                return host, node
        raise KeyError(f"no fake node {node_id} is running in farm {self.farm_id}")

    def crash(self, node_id: str, exit_code: int = 1) -> int:
        """Make a running node die now, as its own crash; returns its pid."""
        host, node = self.find(node_id)
        host.end(node, exit_code, "crashed (injected)")
        return node.pid

    def set_sick(self, node_id: str, sick: bool = True) -> None:
        """A sick node keeps running but fails every health check until made well."""
        _, node = self.find(node_id)
        node.sick = sick

    def cut(self, host_name: str, cut: bool = True) -> None:
        """Cut a host off (every call on it raises ``HostUnreachable``), or join it again.
        Its nodes keep running meanwhile, as on a real host behind a broken link."""
        self.host(host_name).cut_off = cut

    def alive(self) -> dict[str, FakeNode]:
        """Every node alive now, by id."""
        found = {}
        for host in self.hosts.values():
            host.settle()
            found.update({node_id: node for node_id, node in host.nodes.items() if node.alive})
        return found


_WORLDS: dict[str, FakeWorld] = {}


def world(farm_id: str) -> FakeWorld:
    """The simulated world of farm ``farm_id`` in this process (made on first use)."""
    found = _WORLDS.get(farm_id)
    if found is None:
        found = _WORLDS[farm_id] = FakeWorld(farm_id)
    return found


def forget(farm_id: str) -> None:
    """Drop a farm's world (a test that is done with it)."""
    _WORLDS.pop(farm_id, None)


class FakeDriver(Driver):
    """A driver whose host is a ``FakeHost`` of the farm's world (see the module docstring)."""

    kind = "fake"
    simulated = True

    def __init__(self, name: str, spec: HostSpec, state_dir: Path, farm_id: str) -> None:
        self.name = name
        self.address = ADDRESS
        self.farm_id = farm_id
        self.world = world(farm_id)
        self.host = self.world.host(name, spec.fake_options)

    def __repr__(self) -> str:
        alive = sum(1 for n in self.host.nodes.values() if n.alive)
        return f"<FakeDriver {self.name} [nodes alive: {alive}{' | cut off' if self.host.cut_off else ''}]>"

    async def start(self, launch: NodeLaunch) -> RunningNode:
        host = self.host
        host.check_reachable()
        if host.options.start_latency > 0:
            await asyncio.sleep(host.options.start_latency)
            host.check_reachable()
        now = host.now()
        rate = host.options.crash_rate
        crash_at = now + host.crash_draws.expovariate(rate) if rate > 0 else math.inf
        node = FakeNode(launch.node_id, launch.role, self.world.next_pid(), launch.port, now, crash_at,
                        dict(launch.env))
        host.add(node)
        where = f" on port {launch.port}" if launch.port is not None else ""
        host.say(launch.node_id, f"started {launch.node_id} (role {launch.role}, pid {node.pid}){where}: "
                                 f"{launch.command}")
        return node.running()

    async def signal(self, node: RunningNode, signame: str) -> None:
        host = self.host
        host.check_reachable()
        host.settle()
        found = host.nodes.get(node.node_id)
        if found is None or not found.alive or found.pid != node.pid or signame in HARMLESS_SIGNALS:
            return
        number = getattr(signals, "SIG" + signame, None)
        if number is None:
            raise DriverError(self.name, f"node {node.node_id}: no signal {signame}")
        host.end(found, -int(number), f"stopped by SIG{signame}")  # as Popen reports a signal

    async def list(self) -> dict[str, RunningNode]:
        host = self.host
        host.check_reachable()
        host.settle()
        listed = {node_id: node.running() for node_id, node in host.nodes.items()}
        for node_id, node in list(host.nodes.items()):
            if not node.alive:
                del host.nodes[node_id]  # a dead node is reported once
                host.changes += 1
        return listed

    def listing_mark(self) -> object | None:
        """The host's change count: ``list`` answers the same while it stays (a host that is
        cut off says None, so it is asked, and fails, every time)."""
        host = self.host
        if host.cut_off:
            return None
        host.settle()
        return host.changes

    async def node_metrics(self, nodes: builtins.list[RunningNode]) -> dict[str, NodeMetrics]:
        host = self.host
        host.check_reachable()
        host.settle()
        options = host.options
        metrics = {}
        for node in nodes:
            found = host.nodes.get(node.node_id)
            if found is not None and found.alive and found.pid == node.pid:
                metrics[node.node_id] = NodeMetrics(options.cpu, int(options.rss_mb * (1 << 20)), options.connections)
        return metrics

    async def host_metrics(self) -> HostMetrics:
        host = self.host
        host.check_reachable()
        host.settle()
        options = host.options
        alive = sum(1 for n in host.nodes.values() if n.alive)
        total = options.memory_mb << 20
        available = max(total - total // SYSTEM_SHARE - int(alive * options.rss_mb * (1 << 20)), 0)
        return HostMetrics(options.load + alive * options.cpu / 100, options.cpus, total, available)

    async def exec(self, command: str, timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
        self.host.check_reachable()
        self.host.commands.append(command)
        options = self.host.options
        return ExecResult(options.exec_exit_code, options.exec_output.encode(), b"")

    async def put_file(self, data: bytes, path: str, mode: int = 0o644) -> None:
        self.host.check_reachable()
        self.host.files[path] = (bytes(data), mode)

    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        self.host.check_reachable()
        self.host.settle()
        log = self.host.logs.get(node_id, b"")
        return bytes(log[offset:offset + limit])

    async def port_is_free(self, port: int) -> bool:
        self.host.check_reachable()
        self.host.settle()
        return port not in self.host.ports_in_use()

    async def pick_free_port(self, avoid: set[int]) -> int:
        host = self.host
        host.check_reachable()
        host.settle()
        taken = host.ports_in_use() | avoid
        for _ in range(len(PORTS)):
            port = host.next_port
            host.next_port = port + 1 if port + 1 < PORTS.stop else PORTS.start
            if port not in taken:
                return port
        raise DriverError(self.name, f"no free fake port left in {PORTS.start}-{PORTS.stop - 1}")

    def simulated_health(self, node_id: str) -> tuple[bool, str]:
        """Healthy unless dead, booting, sick, flapping or on a host that is cut off."""
        host = self.host
        if host.cut_off:
            return False, "no answer (host cut off by the fake world)"
        host.settle()
        node = host.nodes.get(node_id)
        if node is None or not node.alive:
            return False, "connection refused"
        if host.now() - node.started_at < host.options.boot_time:
            return False, "connection refused (still booting)"
        if node.sick:
            return False, "answered 500 (made sick by the fake world)"
        if host.options.flap_rate and host.flap_draws.random() < host.options.flap_rate:
            return False, "failed at random (fake flap_rate)"
        return True, ""
