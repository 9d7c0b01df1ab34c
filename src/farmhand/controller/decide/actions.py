"""The actions decisions return. The controller writes each to the store, then acts on it."""

from __future__ import annotations

from dataclasses import dataclass

from farmhand.records import OnStop


@dataclass(frozen=True)
class CreateNode:
    node_id: str
    role: str
    host: str
    fingerprint: str
    reason: str


@dataclass(frozen=True)
class StartNode:
    node_id: str


@dataclass(frozen=True)
class MarkRunning:
    node_id: str


@dataclass(frozen=True)
class NodeFailed:
    """The node's process is gone without being asked to stop: restart the slot."""

    node_id: str
    reason: str
    early: bool


@dataclass(frozen=True)
class DrainNode:
    node_id: str
    reason: str
    on_stop: OnStop


@dataclass(frozen=True)
class StopNode:
    node_id: str
    reason: str
    on_stop: OnStop
    failure: bool = False


@dataclass(frozen=True)
class KillNode:
    node_id: str
    reason: str


@dataclass(frozen=True)
class NodeGone:
    """A stopping (or never started) node is gone: remove it, or restart its slot."""

    node_id: str
    on_stop: OnStop


@dataclass(frozen=True)
class SetRole:
    """New backoff bookkeeping for a role."""

    role: str
    failures: int
    backoff_until: float
    failed_at: float


@dataclass(frozen=True)
class AdoptNode:
    """Take a running process as the node's (its pid and start time replace the record's)."""

    node_id: str
    host: str
    pid: int
    started_at: float


@dataclass(frozen=True)
class SignalStray:
    """Signal a process of this farm that no node of the store is (see decide/passive.py)."""

    host: str
    node_id: str
    pid: int
    started_at: float
    signame: str


@dataclass(frozen=True)
class Note:
    """An event with nothing to do but record it (a node that cannot be placed, say)."""

    kind: str
    message: str
    role: str | None = None
    node: str | None = None


Action = (CreateNode | StartNode | MarkRunning | NodeFailed | DrainNode | StopNode | KillNode | NodeGone | SetRole
          | AdoptNode | SignalStray | Note)
