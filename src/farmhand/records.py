"""Plain records shared by the store, the controller and its pure decisions.

They are frozen so a decision can never change what it was shown; a change is always an
action that the controller writes to the store before acting on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class NodeState(StrEnum):
    PENDING = "pending"      # wanted, no process: new, or waiting to restart after a failure
    STARTING = "starting"    # process started, not yet healthy
    RUNNING = "running"      # healthy (or alive, for roles without a health check)
    DRAINING = "draining"    # taken out of its load balancer, finishing open requests
    STOPPING = "stopping"    # stop signal sent; killed when its grace runs out


ACTIVE_STATES = frozenset({NodeState.PENDING, NodeState.STARTING, NodeState.RUNNING})
LIVE_STATES = frozenset({NodeState.STARTING, NodeState.RUNNING, NodeState.DRAINING, NodeState.STOPPING})


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class OnStop(StrEnum):
    REMOVE = "remove"    # the node is gone for good once stopped
    RESTART = "restart"  # the slot starts again (a failed health check)


class Mark(StrEnum):
    NONE = ""
    REMOVE = "remove"    # `farmhand stop NODE`: drain and stop, not replaced
    REPLACE = "replace"  # `farmhand replace NODE`: a new node first, then drain this one


@dataclass(frozen=True)
class NodeRecord:
    id: str
    role: str
    host: str
    state: NodeState
    fingerprint: str
    created_at: float
    state_since: float
    port: int | None = None
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    mark: Mark = Mark.NONE
    on_stop: OnStop = OnStop.REMOVE
    killed: bool = False
    reason: str = ""
    move_to: str | None = None
    """With ``mark == REPLACE``: the host the replacement must go to (a migration)."""

    def replace(self, **changes: Any) -> NodeRecord:
        return dataclasses.replace(self, **changes)

    @property
    def index(self) -> int:
        """The number in the node's id (web-12 -> 12), for ordering by age."""
        tail = self.id.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else 0


@dataclass(frozen=True)
class RoleState:
    """What the controller remembers of a role beyond the farm file."""

    name: str
    wanted: int | None = None      # set by `farmhand scale` (or autoscaling); None: the file's
    failures: int = 0              # nodes that failed soon after starting, in a row
    backoff_until: float = 0.0
    next_index: int = 1


@dataclass(frozen=True)
class Event:
    ts: float
    kind: str
    message: str
    role: str | None = None
    node: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "kind": self.kind, "role": self.role,
                "node": self.node, "message": self.message}
