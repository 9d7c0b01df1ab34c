"""What the controller saw this tick, as plain records for the decisions."""

from __future__ import annotations

from dataclasses import dataclass, field

from farmhand.records import Health


@dataclass(frozen=True)
class NodeSeen:
    """One node as its host and its checks report it."""

    alive: bool
    exit_code: int | None = None
    health: Health = Health.UNKNOWN
    health_detail: str = ""
    in_flight: int = 0
    """Requests or connections open through the role's load balancer (for draining)."""
    log_tail: str = ""


@dataclass(frozen=True)
class HostView:
    name: str
    up: bool = True
    drained: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    max_nodes: int | None = None
    reason: str = ""
    """Why the host is not up, for events."""


@dataclass(frozen=True)
class ProcessSeen:
    """A node process a host listed, with what identifies it for good (pid + start time)."""

    host: str
    node_id: str
    pid: int
    started_at: float


@dataclass(frozen=True)
class World:
    """Everything observed in one tick; nodes missing from ``nodes`` were not seen at all."""

    now: float
    nodes: dict[str, NodeSeen]
    hosts: dict[str, HostView]
    has_lb: frozenset[str] = frozenset()
    """Roles that have a load balancer (their nodes drain before they stop)."""
    shutting_down: bool = False
    load: dict[str, float] = field(default_factory=dict)
    """How busy each node is now (requests in flight, else CPU %), for scale-in's
    ``victims = "least-loaded"``; nodes missing count as idle."""
    adoptable: tuple[ProcessSeen, ...] = ()
    """Processes of known nodes that the store has with another pid or none (a controller
    that died between a start and its write, or a restarted controller)."""
    strays: tuple[ProcessSeen, ...] = ()
    """Processes of this farm that no node of the store is on that host (a host that came back
    with nodes placed elsewhere meanwhile)."""
    start_failures: dict[str, str] = field(default_factory=dict)
    """Nodes whose start failed before any process ran (last tick), with the reason."""
