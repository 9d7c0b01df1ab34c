"""The reconcile decision: from what is wanted and what was seen, the actions to take.

Per role, in two phases (the Ray autoscaler's shape):

1. **Transitions** of nodes that have a process: a node whose process is gone failed (its
   slot restarts, with backoff when it failed soon after starting); a node that failed its
   health check ``fall`` times is stopped and restarted; a starting node that passes its
   check is running; a draining node with nothing in flight (or out of time) is stopped; a
   stopping node past its grace is killed; a stopped node is removed or restarted.
2. **Scale and roll out**: keep ``wanted`` slots. Missing slots are created and placed;
   surplus ones retired (outdated first, then the least ready, then the newest). Nodes
   started from an older version of the role (or marked for replacement) are replaced one
   at a time with one extra node: the new node is healthy before an old one leaves, so
   healthy nodes never drop below ``wanted`` during a rollout.

Retiring a node of a role with a load balancer drains it first. A tick creates at most
``MAX_CREATES_PER_TICK`` nodes per role (a ReplicaSet's burst), so the work of one tick stays
bounded whatever count was asked for; the next tick, a moment later, goes on.

Node names keep meaning (``records.node_id``): a new node takes the lowest free slot, and a
surge replacement keeps its slot with the next generation (web-3 -> web-3.2).
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterable

from farmhand.controller.decide.actions import (
    Action,
    CreateNode,
    DrainNode,
    KillNode,
    MarkRunning,
    NodeFailed,
    NodeGone,
    Note,
    SetRole,
    StartNode,
    StopNode,
)
from farmhand.controller.decide.backoff import backoff_delay
from farmhand.controller.decide.observed import NodeSeen, World
from farmhand.controller.decide.placement import place_many
from farmhand.records import (
    ACTIVE_STATES,
    Health,
    Mark,
    NodeRecord,
    NodeState,
    OnStop,
    RoleState,
    node_id,
)
from farmhand.spec.models import FarmSpec, RoleSpec
from farmhand.units import format_duration

GONE = NodeSeen(alive=False)
MAX_CREATES_PER_TICK = 500
STATE_ORDER = {NodeState.PENDING: 0, NodeState.STARTING: 1, NodeState.RUNNING: 2}


def reconcile(spec: FarmSpec, nodes: Iterable[NodeRecord], roles: dict[str, RoleState], world: World) -> list[Action]:
    """All actions for this tick, role by role (roles gone from the farm file included)."""
    by_role: dict[str, list[NodeRecord]] = defaultdict(list)
    all_nodes = list(nodes)
    for node in all_nodes:
        by_role[node.role].append(node)
    actions: list[Action] = []
    for name in [*spec.roles, *(r for r in by_role if r not in spec.roles)]:
        planner = _RolePlanner(spec, name, by_role.get(name, []), roles.get(name, RoleState(name)), world, all_nodes)
        actions.extend(planner.plan())
    return actions


def wanted_count(role: RoleSpec, state: RoleState) -> int:
    """How many nodes a role should have now: the last scale command (or autoscaling
    decision) while the file still says what it said then, else the file."""
    if count_source(role, state) == "file":
        return role.initial_count
    assert state.wanted is not None
    return role.clamp(state.wanted)


def count_source(role: RoleSpec, state: RoleState) -> str:
    """Who the role's count comes from: "file", "scale" or "autoscaler".

    A count set by hand or by the autoscaler lives while the file's count/min/max stay what
    they were when it was set: an edited file always applies (also across a controller restart).
    """
    if state.wanted is None or state.file_bounds != role.bounds:
        return "file"
    return state.wanted_by


class _RolePlanner:
    def __init__(self, spec: FarmSpec, name: str, nodes: list[NodeRecord], state: RoleState,
                 world: World, all_nodes: list[NodeRecord]) -> None:
        self.spec = spec
        self.name = name
        self.role = spec.roles.get(name)
        self.nodes = nodes  # in the store's order (by age): no sort per tick
        self.state = state
        self.world = world
        self.all_nodes = all_nodes
        self.actions: list[Action] = []
        self.failures = state.failures
        self.backoff_until = state.backoff_until
        self.failed_at = state.failed_at
        self.creates_left = MAX_CREATES_PER_TICK
        self.settled: set[str] = set()
        """Nodes that got an action this tick (so phase 2 leaves them be)."""
        self.leaving: set[str] = set()
        """Nodes an action of this tick removes for good (they no longer hold a slot)."""

    def plan(self) -> list[Action]:
        for node in self.nodes:
            self._transition(node)
        if self.role is None or self.world.shutting_down:
            why = "the farm is shutting down" if self.world.shutting_down else f"role {self.name} left the farm file"
            for node in self.nodes:
                if node.id not in self.settled and node.state in ACTIVE_STATES:
                    self._retire(node, why)
        else:
            self._scale(self.role)
        if (self.failures, self.backoff_until, self.failed_at) != (
            self.state.failures, self.state.backoff_until, self.state.failed_at
        ):
            self.actions.append(SetRole(self.name, self.failures, self.backoff_until, self.failed_at))
        return self.actions

    # phase 1 ---------------------------------------------------------------------------

    def _seen(self, node: NodeRecord) -> NodeSeen:
        return self.world.nodes.get(node.id, GONE)

    def _transition(self, node: NodeRecord) -> None:
        seen = self._seen(node)
        now = self.world.now
        if node.state == NodeState.PENDING and node.id in self.world.start_failures:
            self._count_early_failure(node)
            delay = format_duration(max(self.backoff_until - now, 0.0))
            self.actions.append(Note("node.start_failed", f"{node.id} could not start: "
                                     f"{self.world.start_failures[node.id]}; next try in {delay}", self.name, node.id))
            return
        if node.state in (NodeState.STARTING, NodeState.RUNNING):
            if not seen.alive:
                self._failed(node, _death_reason(node, seen, self.world))
            elif seen.health == Health.UNHEALTHY:
                early = node.state == NodeState.STARTING
                self._act(node, StopNode(node.id, f"failed its health check: {seen.health_detail}".rstrip(": "),
                                         OnStop.RESTART, failure=True))
                if early:
                    self._count_early_failure(node)
            elif node.state == NodeState.STARTING and self._is_ready(seen):
                self._act(node, MarkRunning(node.id))
            elif (node.state == NodeState.RUNNING and self.failures and node.started_at is not None
                  and now - node.started_at >= self.spec.farm.early_failure):
                self.failures, self.backoff_until = 0, 0.0  # a node outlived the window: the role is stable
        elif node.state == NodeState.DRAINING:
            drain_timeout = self.role.lb.drain_timeout if self.role and self.role.lb else 0.0
            if not seen.alive:
                self._act(node, NodeGone(node.id, node.on_stop))
            elif seen.in_flight == 0 or now - node.state_since >= drain_timeout:
                why = "drained" if seen.in_flight == 0 else f"drain timeout ({seen.in_flight} still open)"
                self._act(node, StopNode(node.id, why, node.on_stop))
        elif node.state == NodeState.STOPPING:
            grace = self.role.stop_grace if self.role else 10.0
            if self.role is not None and self.role.pre_stop is not None and node.on_stop == OnStop.REMOVE:
                grace += self.role.pre_stop.timeout  # its hook ran first (controller/prestop.py)
            if not seen.alive:
                self._act(node, NodeGone(node.id, node.on_stop))
            elif not node.killed and now - node.state_since >= grace:
                self._act(node, KillNode(node.id, f"still running {format_duration(grace)} after its stop signal"))

    def _is_ready(self, seen: NodeSeen) -> bool:
        if self.role is None or self.role.health is None:
            return seen.alive
        return seen.health == Health.HEALTHY

    def _failed(self, node: NodeRecord, reason: str) -> None:
        early_window = self.spec.farm.early_failure
        host = self.world.hosts.get(node.host)
        host_died = host is not None and not host.up
        early = not host_died and (node.state == NodeState.STARTING or (
            node.started_at is not None and self.world.now - node.started_at < early_window
        ))
        self._act(node, NodeFailed(node.id, reason, early))
        if early:
            self._count_early_failure(node)

    def _count_early_failure(self, node: NodeRecord) -> None:
        """One more early failure, unless the node was started before the last counted one:
        nodes that fail together (a bad release, a missing file) share one cause and one wait."""
        # state_since is on the controller's clock (a process's own start time can be a second
        # off): the start, or for a running node its readiness, which came after its start
        if node.state_since < self.failed_at:
            return
        self.failed_at = self.world.now
        self.failures += 1
        delay = backoff_delay(self.failures, self.spec.farm.restart_backoff, self.spec.farm.restart_backoff_max)
        self.backoff_until = self.world.now + delay
        self.actions.append(Note("role.backoff", f"role {self.name}: {self.failures} early failure(s) in a row; "
                                 f"next start in {format_duration(delay)}", self.name))

    def _act(self, node: NodeRecord, action: Action) -> None:
        self.actions.append(action)
        self.settled.add(node.id)
        if isinstance(action, (StopNode, DrainNode, NodeGone)) and action.on_stop == OnStop.REMOVE:
            self.leaving.add(node.id)

    # phase 2 ---------------------------------------------------------------------------

    def _scale(self, role: RoleSpec) -> None:
        wanted = wanted_count(role, self.state)
        fingerprint = role.fingerprint()
        for node in self.nodes:
            if node.mark == Mark.REMOVE and node.state in ACTIVE_STATES and node.id not in self.settled:
                self._retire(node, "stopped by request")
        slots = [n for n in self.nodes if self._holds_slot(n)]
        outdated = [n for n in slots if n.fingerprint != fingerprint or n.mark == Mark.REPLACE]
        outdated_ids = {n.id for n in outdated}
        current = [n for n in slots if n.id not in outdated_ids]
        missing = wanted - len(slots)
        if missing > 0:
            self._create(role, missing, fingerprint, f"role {self.name} wants {wanted}, has {len(slots)}")
        elif outdated and len(slots) <= wanted and all(n.state == NodeState.RUNNING for n in current):
            old = next((n for n in outdated if n.move_to), outdated[0])
            why = "replace requested" if old.mark == Mark.REPLACE else "the role's command or env changed"
            if old.move_to:
                why = f"moving it to {old.move_to}"
            self._create(role, 1, fingerprint, f"replacing {old.id} ({why})", only_host=old.move_to, successor_of=old)
        surplus = len(slots) - wanted - (1 if outdated else 0)
        retired = 0
        if surplus > 0:
            for victim in sorted(slots, key=lambda n: self._victim_rank(n, fingerprint))[:surplus]:
                self._retire(victim, f"role {self.name} scaled to {wanted}")
                retired += 1
        elif outdated:
            running = sum(1 for n in slots if n.state == NodeState.RUNNING)
            old = min(outdated, key=lambda n: (n.state == NodeState.RUNNING, n.move_to is None, n.created_at, n.slot))
            if old.state != NodeState.RUNNING or running - 1 >= wanted:
                self._retire(old, f"moved to {old.move_to}" if old.move_to else "replaced by a newer node")
        self._start_pending(slots)

    def _holds_slot(self, node: NodeRecord) -> bool:
        if node.mark == Mark.REMOVE:
            return False
        if node.state in ACTIVE_STATES:
            return node.id not in self.leaving
        return node.on_stop == OnStop.RESTART

    def _victim_rank(self, node: NodeRecord, fingerprint: str) -> tuple[int, int, float, float, int]:
        """Outdated first, then the least ready, then by the role's ``autoscale.victims`` rule
        (newest by default; least-loaded reads ``World.load``, ties going to the newest)."""
        outdated = node.fingerprint != fingerprint or node.mark == Mark.REPLACE
        ready = STATE_ORDER.get(node.state, 0)
        rule = self.role.autoscale.victims if self.role is not None and self.role.autoscale else "newest"
        if rule == "oldest":
            return (0 if outdated else 1, ready, 0.0, node.created_at, node.slot)
        load = self.world.load.get(node.id, 0.0) if rule == "least-loaded" else 0.0
        return (0 if outdated else 1, ready, load, -node.created_at, -node.slot)

    def _create(self, role: RoleSpec, count: int, fingerprint: str, reason: str, only_host: str | None = None,
                successor_of: NodeRecord | None = None) -> None:
        count = min(count, self.creates_left)
        if count <= 0:
            return
        hosts = self.world.hosts
        if only_host is not None:
            hosts = {only_host: hosts[only_host]} if only_host in hosts else {}
        placements = place_many(self.name, role, hosts, self.all_nodes, count)
        names = self._new_names(len(placements), successor_of)
        for placement, new_id in zip(placements, names, strict=True):
            if placement.host is None:
                self.actions.append(Note("node.unplaceable", f"role {self.name}: cannot place a node: {placement.reason}", self.name))
                return
            self.creates_left -= 1
            self.actions.append(CreateNode(new_id, self.name, placement.host, fingerprint, reason))
            if self.world.now >= self.backoff_until:
                self.actions.append(StartNode(new_id))
            self.all_nodes.append(NodeRecord(new_id, self.name, placement.host, NodeState.PENDING, fingerprint,
                                             self.world.now, self.world.now))

    def _new_names(self, count: int, successor_of: NodeRecord | None) -> list[str]:
        """Lowest free slots; a replacement keeps its predecessor's slot, one generation on."""
        if successor_of is not None:
            generations = [n.generation for n in self.nodes if n.slot == successor_of.slot]
            return [node_id(self.name, successor_of.slot, max(generations, default=1) + 1)][:count]
        used = {n.slot for n in self.nodes} | {n.slot for n in self.all_nodes if n.role == self.name}
        names: list[str] = []
        slot = 1
        while len(names) < count:
            if slot not in used:
                names.append(node_id(self.name, slot))
            slot += 1
        return names

    def _start_pending(self, slots: list[NodeRecord]) -> None:
        for node in slots:
            if node.state != NodeState.PENDING or node.id in self.settled:
                continue
            host = self.world.hosts.get(node.host)
            if host is None or not host.up or host.drained:
                why = "is gone from the farm file" if host is None else ("is drained" if host.drained else "is down")
                self._act(node, NodeGone(node.id, OnStop.REMOVE))
                self.actions.append(Note("node.moved", f"{node.id}: host {node.host} {why}; placing it elsewhere",
                                         self.name, node.id))
            elif self.world.now >= self.backoff_until:
                self._act(node, StartNode(node.id))

    def _retire(self, node: NodeRecord, reason: str) -> None:
        if node.state == NodeState.PENDING:
            self._act(node, NodeGone(node.id, OnStop.REMOVE))
        elif self.name in self.world.has_lb and node.state in (NodeState.STARTING, NodeState.RUNNING):
            self._act(node, DrainNode(node.id, reason, OnStop.REMOVE))
        elif node.state in (NodeState.STARTING, NodeState.RUNNING, NodeState.STOPPING):
            self._act(node, StopNode(node.id, reason, OnStop.REMOVE))  # a stopping one: not restarted after all


def exit_wording(exit_code: int | None) -> str:
    """One wording for a node's end, with its exit status where the host knows it (a local
    node that this controller started; not one it adopted, nor one on an SSH host)."""
    if exit_code is None:
        return "exited (exit status unknown)"
    if exit_code < 0:
        try:
            name = f" ({signal.Signals(-exit_code).name})"
        except ValueError:
            name = ""
        return f"exited: killed by signal {-exit_code}{name}"
    return f"exited with code {exit_code}"


def _death_reason(node: NodeRecord, seen: NodeSeen, world: World) -> str:
    host = world.hosts.get(node.host)
    if host is not None and not host.up:
        return f"host {node.host} is down ({host.reason})" if host.reason else f"host {node.host} is down"
    how = exit_wording(seen.exit_code)
    return f"{how}: {seen.log_tail}" if seen.log_tail else how
