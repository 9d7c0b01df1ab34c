"""The one interface every driver implements: local processes, SSH hosts, fake nodes.

A driver owns no intent: the controller decides which nodes should run and the store remembers
it; a driver only does what it is told on one host and reports what really runs there. Every
method is idempotent where it can be (stopping a node that is gone is not an error), and
everything a driver cannot do is a ``DriverError`` naming its host.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.spec.models import HostSpec

FARM_ENV = "FARMHAND_FARM"
NODE_ENV = "FARMHAND_NODE"
HOST_ENV = "FARMHAND_HOST"
"""Every node carries its farm id, its name and its host's name in its environment, whatever
its driver: a controller that died between a start and its pidfile finds the process by them,
and two hosts on one machine never take each other's nodes."""


@dataclass(frozen=True)
class NodeLaunch:
    """Everything a host needs to start one node; ``command`` already has placeholders filled."""

    node_id: str
    role: str
    command: str
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class RunningNode:
    """A node process as the host sees it.

    ``started_at`` is the process's own start time, which with ``pid`` identifies it for good:
    a recycled pid has another start time, so a driver never mistakes a stranger for a node.
    ``exit_code`` is known only when the driver itself reaped the process.
    """

    node_id: str
    pid: int
    started_at: float
    alive: bool = True
    exit_code: int | None = None


@dataclass(frozen=True)
class NodeMetrics:
    cpu_percent: float
    rss_bytes: int
    connections: int | None
    """TCP sockets the node holds; None when not measured (see ``Driver.want_metrics``)."""


OPTIONAL_NODE_METRICS = frozenset({"connections"})
"""Node metrics a driver may leave unmeasured when nobody reads them (they cost the most)."""


@dataclass(frozen=True)
class HostMetrics:
    load1: float
    cpu_count: int
    memory_total: int
    memory_available: int


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class Driver(abc.ABC):
    """One host. ``name`` is the host's name in the farm file; ``address`` is where its nodes
    can be reached by health checks and load balancers."""

    name: str
    address: str
    kind: str

    @abc.abstractmethod
    def __init__(self, name: str, spec: HostSpec, state_dir: Path, farm_id: str) -> None:
        """Every driver is made from the same four things (``farmhand.drivers.make_driver``):
        the host's name and table in the farm file, the farm's state folder, and the farm id
        that tags every node so two farms on one host never adopt each other's nodes."""

    @abc.abstractmethod
    async def start(self, launch: NodeLaunch) -> RunningNode:
        """Start a node detached from the controller (own session, logs on the host)."""

    @abc.abstractmethod
    async def signal(self, node: RunningNode, signame: str) -> None:
        """Send a signal to the node's whole process group; a node already gone is fine."""

    @abc.abstractmethod
    async def list(self) -> dict[str, RunningNode]:
        """Every node of this farm that runs on the host now, by node id (dead ones that the
        driver reaped are included once with ``alive=False`` and their exit code)."""

    @abc.abstractmethod
    async def node_metrics(self, nodes: builtins.list[RunningNode]) -> dict[str, NodeMetrics]:
        """CPU, memory and connections of running nodes, by node id."""

    @abc.abstractmethod
    async def host_metrics(self) -> HostMetrics:
        """The host's load and size."""

    @abc.abstractmethod
    async def exec(self, command: str, timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
        """Run a shell command on the host and wait for it (health checks, fleet exec)."""

    @abc.abstractmethod
    async def put_file(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file on the host (atomically: readers never see half of it)."""

    @abc.abstractmethod
    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Bytes of a node's log from ``offset`` (empty when there is nothing new)."""

    @abc.abstractmethod
    async def port_is_free(self, port: int) -> bool:
        """Whether nothing listens on ``port`` on the host now."""

    @abc.abstractmethod
    async def pick_free_port(self, avoid: set[int]) -> int:
        """A port free on the host now and not in ``avoid`` (ports given to other nodes)."""

    def want_metrics(self, names: frozenset[str]) -> None:  # noqa: B027 - a hint, free to ignore
        """Which of ``OPTIONAL_NODE_METRICS`` the controller will read from ``node_metrics``
        until told otherwise (all of them until the first call). A driver for which one costs
        real work (the local driver's connection count reads the kernel's socket tables) may
        answer ``None`` for it while it is not wanted; a driver may always measure more."""

    async def close(self) -> None:  # noqa: B027 - optional for drivers that hold nothing
        """Release connections; nodes keep running."""

    simulated = False
    """True for a driver whose nodes live in memory (``simulated_health`` answers every check
    of them): the health monitor then checks them all from one timer, not a task per node."""

    def simulated_health(self, node_id: str) -> tuple[bool, str] | None:
        """A simulated node's health check answer, ``(ok, detail)``; ``None`` (every real
        driver) means "check it for real" over the network. The fake driver answers here so
        thousands of simulated nodes cost no socket."""
        return None

    def listing_mark(self) -> object | None:
        """A value that changes whenever ``list()`` could answer differently, so a controller
        may keep the last listing while it is the same; ``None`` (the default, every real
        driver) means "unknown: list again"."""
        return None
