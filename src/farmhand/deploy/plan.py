"""A deploy's decisions, pure: which hosts get the release, which nodes move and in what
order, how long each step may take, and how far one replacement has come.

The workflow (``farmhand.deploy.run``) reads the controller's records, asks these functions,
and acts through the controller's commands; nothing here touches a host or a clock.

One replacement goes (max surge 1, max unavailable 0, as `farmhand replace`):

1. the old node is marked for replacement; the controller starts a successor in its slot
   (``web-3`` -> ``web-3.2``) from ``DEST/current``, which now is the new release;
2. the successor passes its health check: it is running and in the balancer;
3. the controller drains the old node (no new requests, open ones finish) and stops it;
4. once the old node is gone, the next one.

A successor that fails its check, exits, or is not ready within its deadline (derived from
the role's health settings) fails the deploy: the hosts go back to the previous release and
the nodes already moved are moved back onto it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from farmhand.records import (
    ACTIVE_STATES,
    LIVE_STATES,
    Health,
    Mark,
    NodeRecord,
    NodeState,
    parse_node_id,
)
from farmhand.spec.models import FarmSpec, RoleSpec

START_SLACK = 10.0
"""Beyond the health settings' own worst case: starting a process (over SSH, on a busy host)."""
PLACE_SLACK = 30.0
"""How long a successor may take to appear and start, beyond the role's restart backoff."""
LEAVE_SLACK = 30.0
"""Beyond drain timeout + stop grace (+ pre_stop): a stopped node that is slow to be gone."""


@dataclass(frozen=True)
class HostView:
    """What the deploy needs to know of one host."""

    name: str
    driver: str
    up: bool
    drained: bool
    labels: Mapping[str, str]


def release_hosts(role_name: str, role: RoleSpec, hosts: Iterable[HostView],
                  nodes: Iterable[NodeRecord]) -> list[str]:
    """The hosts the release goes to: those that run the role now, and those placement may put
    a successor on (up, not drained, carrying the role's ``require`` labels). Fake hosts have
    no file system. In the farm file's order."""
    running = {n.host for n in nodes if n.role == role_name and n.state in LIVE_STATES}
    chosen = []
    for host in hosts:
        if host.driver == "fake":
            continue
        eligible = host.up and not host.drained and all(host.labels.get(k) == v for k, v in role.require.items())
        if eligible or host.name in running:
            chosen.append(host.name)
    return chosen


def to_replace(role_name: str, nodes: Iterable[NodeRecord]) -> list[str]:
    """The role's nodes with a process started before the switch, oldest first (a node that
    has no process yet starts from ``current`` by itself: it needs no replacement)."""
    moving = [n for n in nodes if n.role == role_name and n.state in (NodeState.STARTING, NodeState.RUNNING)
              and n.mark == Mark.NONE]
    return [n.id for n in sorted(moving, key=lambda n: (n.created_at, n.slot, n.generation))]


@dataclass(frozen=True)
class Limits:
    """Deadlines of one replacement, in seconds."""

    appear: float
    """From the mark until the successor's process is started."""
    ready: float
    """From the successor's start until it is healthy (running)."""
    leave: float
    """From the successor being ready until the old node is gone."""


def limits_for(spec: FarmSpec, role: RoleSpec) -> Limits:
    """Deadlines from the role's own settings: a successor is given the check's start grace
    and then enough checks to rise (and to fall, on the way) before it counts as failed."""
    health = role.health
    if health is None:
        ready = START_SLACK
    else:
        per_check = health.interval + health.timeout
        ready = health.start_grace + (health.rise + health.fall) * per_check + START_SLACK
    drain = role.lb.drain_timeout if role.lb is not None else 0.0
    hook = role.pre_stop.timeout if role.pre_stop is not None else 0.0
    return Limits(appear=spec.farm.restart_backoff_max + PLACE_SLACK, ready=ready,
                  leave=drain + role.stop_grace + hook + LEAVE_SLACK)


def successor_of(old_id: str, nodes: Iterable[NodeRecord]) -> NodeRecord | None:
    """The newest node in the old node's slot, one generation on or more."""
    old_role, old_slot, old_generation = _parts(old_id)
    best: NodeRecord | None = None
    for node in nodes:
        if node.role == old_role and node.slot == old_slot and node.generation > old_generation and (
                best is None or node.generation > best.generation):
            best = node
    return best


def _parts(node_id: str) -> tuple[str, int, int]:
    return parse_node_id(node_id)


class Phase(StrEnum):
    WAITING = "waiting"      # for the successor to be started and healthy
    LEAVING = "leaving"      # the successor is ready; the old node drains and stops
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Progress:
    """Where one replacement stands; its memory goes into the next ``judge`` as a value."""

    old: str
    marked_at: float
    phase: Phase = Phase.WAITING
    successor: str | None = None
    started_at: float | None = None
    """When the successor was first seen with a process (the controller's clock)."""
    ready_at: float | None = None
    reason: str = ""


def judge(progress: Progress, nodes: Mapping[str, NodeRecord], health: Mapping[str, Health], now: float,
          limits: Limits) -> Progress:
    """One look at a replacement: its next ``Progress`` (DONE and FAILED are final).

    ``nodes``: the role's records by id now; ``health``: check states of the nodes that have one.
    """
    if progress.phase in (Phase.DONE, Phase.FAILED):
        return progress
    old = nodes.get(progress.old)
    successor = successor_of(progress.old, nodes.values())
    if successor is None:
        if old is None or old.state not in LIVE_STATES:
            return _failed(progress, f"{progress.old} is gone and no node took its place")
        if now - progress.marked_at > limits.appear:
            return _failed(progress, f"no node was started for {progress.old} within {limits.appear:g}s")
        return progress
    current = progress if progress.successor == successor.id else Progress(
        progress.old, progress.marked_at, Phase.WAITING, successor.id)
    if current.phase == Phase.WAITING:
        return _waiting(current, successor, health.get(successor.id, Health.UNKNOWN), now, limits)
    if old is None or old.state not in LIVE_STATES:
        return _with(current, phase=Phase.DONE, reason=f"{progress.old} -> {successor.id}")
    since = current.ready_at if current.ready_at is not None else now
    if now - since > limits.leave:
        return _failed(current, f"{progress.old} was not drained and stopped within {limits.leave:g}s")
    return current


def _waiting(progress: Progress, successor: NodeRecord, health: Health, now: float, limits: Limits) -> Progress:
    if successor.mark == Mark.REMOVE or successor.state in (NodeState.DRAINING, NodeState.STOPPING):
        detail = f": {successor.reason}" if successor.reason else ""
        return _failed(progress, f"{successor.id} (new release) was stopped before it was ready{detail}")
    if successor.restarts > 0 or health == Health.UNHEALTHY:
        detail = successor.reason or "it failed its health check"
        return _failed(progress, f"{successor.id} (new release) failed: {detail}")
    started_at = progress.started_at
    if started_at is None and successor.state in (NodeState.STARTING, NodeState.RUNNING):
        started_at = now
        progress = _with(progress, started_at=now)
    if successor.state == NodeState.RUNNING:
        return _with(progress, phase=Phase.LEAVING, ready_at=now)
    if started_at is None:
        if now - progress.marked_at > limits.appear:
            return _failed(progress, f"{successor.id} did not start within {limits.appear:g}s")
        return progress
    if now - started_at > limits.ready:
        return _failed(progress, f"{successor.id} (new release) was not healthy within {limits.ready:g}s")
    return progress


def _failed(progress: Progress, reason: str) -> Progress:
    return _with(progress, phase=Phase.FAILED, reason=reason)


def _with(progress: Progress, **changes: Any) -> Progress:
    return replace(progress, **changes)


@dataclass(frozen=True)
class Undo:
    """What to do with one replacement when the deploy fails: nodes whose mark goes back to
    none (an old node that keeps serving), nodes to stop (a successor that never got ready),
    and nodes that run the new release and must be moved back."""

    keep: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    move_back: tuple[str, ...] = ()


def undo(progress: Progress, nodes: Mapping[str, NodeRecord]) -> Undo:
    """How to take back an unfinished replacement, from where it stands."""
    old = nodes.get(progress.old)
    successor = nodes.get(progress.successor) if progress.successor else None
    if successor is not None and successor.state == NodeState.RUNNING and successor.mark != Mark.REMOVE:
        return Undo(move_back=(successor.id,))  # it serves: moved back like the others, never dropped
    keep = (progress.old,) if old is not None and old.state in ACTIVE_STATES and old.mark == Mark.REPLACE else ()
    remove = (successor.id,) if successor is not None and successor.mark != Mark.REMOVE and (
        successor.state in ACTIVE_STATES or successor.state == NodeState.STOPPING) else ()
    return Undo(keep=keep, remove=remove)
