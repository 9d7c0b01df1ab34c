"""The deploy's pure decisions (farmhand.deploy.plan): hosts, order, deadlines, one
replacement judged step by step, and how an unfinished one is taken back."""

from __future__ import annotations

import pytest

from farmhand.deploy import plan
from farmhand.deploy.plan import Phase, Progress
from farmhand.records import Health, Mark, NodeRecord, NodeState
from farmhand.spec.load import parse_farm

LIMITS = plan.Limits(appear=30.0, ready=10.0, leave=20.0)


def node(node_id: str, state: NodeState = NodeState.RUNNING, *, host: str = "h1", created: float = 0.0,
         mark: Mark = Mark.NONE, restarts: int = 0, reason: str = "") -> NodeRecord:
    return NodeRecord(node_id, node_id.rpartition("-")[0], host, state, "f", created, created, mark=mark,
                      restarts=restarts, reason=reason)


def by_id(*nodes: NodeRecord) -> dict[str, NodeRecord]:
    return {n.id: n for n in nodes}


FARM = """
[farm]
restart_backoff_max = "20s"
[hosts.h1]
labels = { zone = "a" }
[hosts.h2]
labels = { zone = "b" }
[hosts.sim]
driver = "fake"
[roles.web]
command = "app"
count = 2
stop_grace = "3s"
require = { zone = "a" }
lb = { listen = "127.0.0.1:9000", drain_timeout = "5s" }
[roles.web.health]
interval = "500ms"
timeout = "500ms"
rise = 2
fall = 3
start_grace = "4s"
[roles.web.deploy]
source = "app"
dest = "/srv/{host}/web"
"""


def test_release_hosts_are_where_the_role_runs_and_where_it_may_be_placed() -> None:
    spec = parse_farm(FARM)
    views = [plan.HostView("h1", "local", True, False, {"zone": "a"}),
             plan.HostView("h2", "ssh", True, False, {"zone": "b"}),
             plan.HostView("sim", "fake", True, False, {"zone": "a"})]
    assert plan.release_hosts("web", spec.roles["web"], views, []) == ["h1"], "labels; fake hosts have no files"
    running_on_h2 = [node("web-1", host="h2")]
    assert plan.release_hosts("web", spec.roles["web"], views, running_on_h2) == ["h1", "h2"]
    down = [plan.HostView("h1", "local", False, False, {"zone": "a"}),
            plan.HostView("h2", "ssh", True, True, {"zone": "a"})]
    assert plan.release_hosts("web", spec.roles["web"], down, []) == [], "down and drained hosts take no new node"


def test_nodes_move_oldest_first_and_only_those_with_a_process() -> None:
    nodes = [node("web-2", created=5.0), node("web-1", created=5.0), node("web-3.2", created=1.0),
             node("web-4", NodeState.PENDING), node("web-5", mark=Mark.REPLACE), node("db-1"),
             node("web-6", NodeState.DRAINING)]
    assert plan.to_replace("web", nodes) == ["web-3.2", "web-1", "web-2"]


def test_deadlines_come_from_the_roles_settings() -> None:
    spec = parse_farm(FARM)
    limits = plan.limits_for(spec, spec.roles["web"])
    assert limits.ready == pytest.approx(4.0 + (2 + 3) * 1.0 + plan.START_SLACK)
    assert limits.appear == pytest.approx(20.0 + plan.PLACE_SLACK)
    assert limits.leave == pytest.approx(5.0 + 3.0 + plan.LEAVE_SLACK)


def test_a_replacement_goes_waiting_leaving_done() -> None:
    start = Progress("web-1", marked_at=100.0)
    old = node("web-1", mark=Mark.REPLACE)
    step = plan.judge(start, by_id(old), {}, 101.0, LIMITS)
    assert step == start, "no successor yet: wait"
    starting = node("web-1.2", NodeState.STARTING)
    step = plan.judge(step, by_id(old, starting), {"web-1.2": Health.UNKNOWN}, 102.0, LIMITS)
    assert (step.phase, step.successor, step.started_at) == (Phase.WAITING, "web-1.2", 102.0)
    ready = node("web-1.2")
    step = plan.judge(step, by_id(old, ready), {"web-1.2": Health.HEALTHY}, 104.0, LIMITS)
    assert (step.phase, step.ready_at) == (Phase.LEAVING, 104.0)
    draining = node("web-1", NodeState.DRAINING, mark=Mark.REPLACE)
    step = plan.judge(step, by_id(draining, ready), {}, 110.0, LIMITS)
    assert step.phase == Phase.LEAVING
    step = plan.judge(step, by_id(ready), {}, 111.0, LIMITS)
    assert step.phase == Phase.DONE
    assert plan.judge(step, {}, {}, 999.0, LIMITS) == step, "final"


@pytest.mark.parametrize(("successor", "health", "now", "why"), [
    (node("web-1.2", NodeState.STARTING), Health.UNHEALTHY, 103.0, "failed"),
    (node("web-1.2", NodeState.PENDING, restarts=1, reason="failed its health check: 503"), Health.UNKNOWN, 103.0,
     "failed its health check: 503"),
    (node("web-1.2", NodeState.STOPPING, reason="exited with code 1"), Health.UNKNOWN, 103.0, "stopped"),
    (node("web-1.2", NodeState.STARTING), Health.UNKNOWN, 102.0 + LIMITS.ready + 0.1, "not healthy within"),
    (node("web-1.2", NodeState.PENDING), Health.UNKNOWN, 100.0 + LIMITS.appear + 0.1, "did not start"),
])
def test_a_successor_that_fails_fails_the_replacement(successor: NodeRecord, health: Health, now: float,
                                                      why: str) -> None:
    old = node("web-1", mark=Mark.REPLACE)
    seen = Progress("web-1", 100.0, Phase.WAITING, "web-1.2", started_at=102.0 if successor.state ==
                    NodeState.STARTING else None)
    step = plan.judge(seen, by_id(old, successor), {"web-1.2": health}, now, LIMITS)
    assert step.phase == Phase.FAILED and why in step.reason, step


def test_no_successor_in_time_or_the_old_node_gone_fails() -> None:
    old = node("web-1", mark=Mark.REPLACE)
    late = plan.judge(Progress("web-1", 0.0), by_id(old), {}, LIMITS.appear + 1, LIMITS)
    assert late.phase == Phase.FAILED and "no node was started" in late.reason
    gone = plan.judge(Progress("web-1", 0.0), {}, {}, 1.0, LIMITS)
    assert gone.phase == Phase.FAILED and "gone" in gone.reason


def test_an_old_node_that_does_not_leave_in_time_fails() -> None:
    seen = Progress("web-1", 0.0, Phase.LEAVING, "web-1.2", started_at=1.0, ready_at=2.0)
    draining = node("web-1", NodeState.DRAINING, mark=Mark.REPLACE)
    step = plan.judge(seen, by_id(draining, node("web-1.2")), {}, 2.0 + LIMITS.leave + 1, LIMITS)
    assert step.phase == Phase.FAILED and "not drained" in step.reason


def test_undo_keeps_the_old_node_and_stops_a_successor_that_never_got_ready() -> None:
    failed = Progress("web-2", 0.0, Phase.FAILED, "web-2.2", reason="unhealthy")
    nodes = by_id(node("web-2", mark=Mark.REPLACE), node("web-2.2", NodeState.STARTING))
    assert plan.undo(failed, nodes) == plan.Undo(keep=("web-2",), remove=("web-2.2",))
    restarting = by_id(node("web-2", mark=Mark.REPLACE), node("web-2.2", NodeState.PENDING, restarts=1))
    assert plan.undo(failed, restarting) == plan.Undo(keep=("web-2",), remove=("web-2.2",))


def test_undo_moves_back_a_successor_that_serves() -> None:
    failed = Progress("web-2", 0.0, Phase.FAILED, "web-2.2", reason="old node not drained")
    nodes = by_id(node("web-2", NodeState.DRAINING, mark=Mark.REPLACE), node("web-2.2"))
    assert plan.undo(failed, nodes) == plan.Undo(move_back=("web-2.2",))


def test_undo_with_no_successor_only_unmarks_the_old_node() -> None:
    failed = Progress("web-2", 0.0, Phase.FAILED, None, reason="no node was started")
    assert plan.undo(failed, by_id(node("web-2", mark=Mark.REPLACE))) == plan.Undo(keep=("web-2",))
