"""A pure simulation of the controller's act phase, for decision tests: it applies actions to
records the way the real controller does, and lets a test say how the world answers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from farmhand.controller.decide import actions as a
from farmhand.controller.decide.observed import HostView, NodeSeen, World
from farmhand.controller.decide.reconcile import reconcile
from farmhand.records import Health, NodeRecord, NodeState, OnStop, RoleState
from farmhand.spec import parse_farm
from farmhand.spec.models import FarmSpec


@dataclass
class Sim:
    spec: FarmSpec
    now: float = 1000.0
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    roles: dict[str, RoleState] = field(default_factory=dict)
    seen: dict[str, NodeSeen] = field(default_factory=dict)
    lb_roles: frozenset[str] = frozenset()
    shutting_down: bool = False
    log: list[a.Action] = field(default_factory=list)
    next_pid: int = 100

    @classmethod
    def of(cls, farm_toml: str, **kwargs: object) -> Sim:
        return cls(parse_farm(farm_toml), **kwargs)  # type: ignore[arg-type]

    def world(self) -> World:
        hosts = {name: HostView(name, labels=dict(h.labels), max_nodes=h.capacity.nodes)
                 for name, h in self.spec.hosts.items()}
        return World(self.now, dict(self.seen), hosts, self.lb_roles, self.shutting_down)

    def tick(self) -> list[a.Action]:
        return self.tick_with()

    def tick_with(self, **seen: object) -> list[a.Action]:
        """A tick whose world also carries ``seen`` (``start_failures``, ``strays``...)."""
        world = dataclasses.replace(self.world(), **seen)  # type: ignore[arg-type]
        actions = reconcile(self.spec, list(self.nodes.values()), dict(self.roles), world)
        for action in actions:
            self.apply(action)
        self.log.extend(actions)
        return actions

    def apply(self, action: a.Action) -> None:
        now = self.now
        match action:
            case a.CreateNode():
                self.nodes[action.node_id] = NodeRecord(action.node_id, action.role, action.host, NodeState.PENDING,
                                                        action.fingerprint, now, now)
            case a.StartNode():
                node = self.nodes[action.node_id]
                self.next_pid += 1
                self.nodes[node.id] = node.replace(state=NodeState.STARTING, state_since=now, pid=self.next_pid,
                                                   started_at=now)
                self.seen[node.id] = NodeSeen(alive=True)
            case a.MarkRunning():
                self.nodes[action.node_id] = self.nodes[action.node_id].replace(state=NodeState.RUNNING, state_since=now)
            case a.NodeFailed():
                node = self.nodes[action.node_id]
                self.nodes[node.id] = node.replace(state=NodeState.PENDING, pid=None, restarts=node.restarts + 1,
                                                   state_since=now)
            case a.DrainNode():
                self.nodes[action.node_id] = self.nodes[action.node_id].replace(
                    state=NodeState.DRAINING, state_since=now, on_stop=action.on_stop)
            case a.StopNode():
                node = self.nodes[action.node_id]
                since = node.state_since if node.state == NodeState.STOPPING else now
                self.nodes[node.id] = node.replace(state=NodeState.STOPPING, state_since=since, on_stop=action.on_stop)
            case a.KillNode():
                self.nodes[action.node_id] = self.nodes[action.node_id].replace(killed=True)
            case a.NodeGone():
                node = self.nodes[action.node_id]
                self.seen.pop(node.id, None)
                if action.on_stop == OnStop.RESTART:
                    self.nodes[node.id] = node.replace(state=NodeState.PENDING, pid=None, restarts=node.restarts + 1,
                                                       on_stop=OnStop.REMOVE, state_since=now)
                else:
                    del self.nodes[node.id]
            case a.SetRole():
                old = self.roles.get(action.role, RoleState(action.role))
                self.roles[action.role] = old.replace(failures=action.failures, backoff_until=action.backoff_until,
                                                      failed_at=action.failed_at)
            case a.Note():
                pass

    # how the world answers -----------------------------------------------------------------

    def all_healthy(self) -> None:
        for node in self.nodes.values():
            if node.state in (NodeState.STARTING, NodeState.RUNNING):
                self.seen[node.id] = NodeSeen(alive=True, health=Health.HEALTHY)

    def stopped_ones_exit(self) -> None:
        for node in self.nodes.values():
            if node.state in (NodeState.STOPPING,):
                self.seen[node.id] = NodeSeen(alive=False)
            if node.state == NodeState.DRAINING:
                self.seen[node.id] = NodeSeen(alive=True, in_flight=0)

    def settle(self, ticks: int = 50, step: float = 1.0) -> None:
        """Tick until nothing changes, the world answering well to everything."""
        for _ in range(ticks):
            self.now += step
            self.all_healthy()
            self.stopped_ones_exit()
            if not self.tick():
                return
        raise AssertionError("the farm did not settle")

    def scaled(self, role: str, count: int) -> None:
        """As `farmhand scale` records it: the count, by hand, against the file's bounds."""
        self.roles[role] = self.roles.get(role, RoleState(role)).replace(
            wanted=count, wanted_by="scale", file_bounds=self.spec.roles[role].bounds)

    def by_state(self, state: NodeState, role: str = "web") -> list[NodeRecord]:
        return [n for n in self.nodes.values() if n.role == role and n.state == state]

    def kinds(self) -> list[str]:
        return [type(x).__name__ for x in self.log]
