"""Plain records shared by the store, the controller and its pure decisions.

They are frozen so a decision can never change what it was shown; a change is always an
action that the controller writes to the store before acting on it.
"""

from __future__ import annotations

import dataclasses
import functools
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
    def slot(self) -> int:
        """The slot number in the node's id (web-3 and web-3.2 -> 3)."""
        return parse_node_id(self.id)[1]

    @property
    def generation(self) -> int:
        """Which replacement of its slot the node is (web-3 -> 1, web-3.2 -> 2)."""
        return parse_node_id(self.id)[2]


def node_id(role: str, slot: int, generation: int = 1) -> str:
    """A node's name: ``web-3`` for a slot's first node, ``web-3.2`` for the node that
    replaced it by surge (replace, rollout, migration). Names keep meaning: a fresh farm starts
    at web-1, a new node takes the lowest free slot (as docker compose numbers replicas), and a
    replacement shows which node it took over from."""
    return f"{role}-{slot}" if generation <= 1 else f"{role}-{slot}.{generation}"


@functools.lru_cache(maxsize=1 << 17)
def parse_node_id(text: str) -> tuple[str, int, int]:
    """``web-3.2`` -> ("web", 3, 2); a name of another form sorts as slot 0."""
    role, _, tail = text.rpartition("-")
    slot, _, generation = tail.partition(".")
    if not slot.isdigit() or (generation and not generation.isdigit()):
        return text, 0, 1
    return role, int(slot), int(generation or 1)


@dataclass(frozen=True)
class RoleState:
    """What the controller remembers of a role beyond the farm file."""

    name: str
    wanted: int | None = None      # set by `farmhand scale` (or autoscaling); None: the file's
    failures: int = 0              # nodes that failed soon after starting, in a row
    backoff_until: float = 0.0
    failed_at: float = 0.0
    """When the last early failure was counted: nodes started before it that fail too failed
    together with it (one cause), and do not double the wait again."""
    wanted_by: str = "file"        # who set ``wanted``: "scale" or "autoscaler" ("file": unset)
    file_bounds: str = ""
    """The file's count/min/max when ``wanted`` was set: once the file says otherwise, the
    edited file wins (see ``count_source``)."""

    def replace(self, **changes: Any) -> RoleState:
        return dataclasses.replace(self, **changes)


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
