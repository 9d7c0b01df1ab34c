"""The reconcile decision, as a spec: farm + records + what was seen -> actions."""

from __future__ import annotations

import textwrap

from hypothesis import given
from hypothesis import strategies as st

from farmhand.controller.decide import actions as a
from farmhand.controller.decide.observed import NodeSeen
from farmhand.controller.decide.reconcile import wanted_count
from farmhand.records import Health, Mark, NodeState, RoleState
from tests.unit.sim import Sim


def farm(count: int = 3, extra: str = "", health: bool = True, hosts: str = "") -> str:
    check = '\n[roles.web.health]\ntype = "http"\n' if health else ""
    return textwrap.dedent(f"""\
        [farm]
        restart_backoff = "1s"
        restart_backoff_max = "8s"
        {hosts}
        [roles.web]
        command = "app --port {{port}}"
        count = {count}
        {extra}
        """) + check


def test_an_empty_farm_creates_and_starts_every_node() -> None:
    sim = Sim.of(farm(3))
    actions = sim.tick()
    assert [type(x) for x in actions[:6]] == [a.CreateNode, a.StartNode] * 3
    assert sorted(sim.nodes) == ["web-1", "web-2", "web-3"]
    assert len(actions) == 6, "names need no stored counter: nothing else to write"


def test_a_starting_node_is_running_only_once_healthy() -> None:
    sim = Sim.of(farm(1))
    sim.tick()
    sim.now += 1
    assert sim.tick() == []
    sim.seen["web-1"] = NodeSeen(alive=True, health=Health.HEALTHY)
    assert sim.tick() == [a.MarkRunning("web-1")]


def test_without_a_health_check_alive_is_ready() -> None:
    sim = Sim.of(farm(1, health=False))
    sim.tick()
    assert sim.tick() == [a.MarkRunning("web-1")]


def test_a_dead_node_fails_and_its_slot_restarts_after_backoff() -> None:
    sim = Sim.of(farm(1))
    sim.settle()
    sim.seen["web-1"] = NodeSeen(alive=False, exit_code=3, log_tail="Traceback: boom")
    actions = sim.tick()
    failed = next(x for x in actions if isinstance(x, a.NodeFailed))
    assert failed.reason == "exited with code 3: Traceback: boom" and failed.early
    assert sim.nodes["web-1"].state == NodeState.PENDING
    assert sim.tick() == [], "inside the backoff nothing starts"
    sim.now += 1.0
    assert sim.tick() == [a.StartNode("web-1")]
    assert sim.nodes["web-1"].restarts == 1


def test_backoff_doubles_and_is_capped() -> None:
    sim = Sim.of(farm(1, health=False))
    delays = []
    for _ in range(6):
        sim.tick()  # start (or restart)
        sim.seen["web-1"] = NodeSeen(alive=False, exit_code=1)
        sim.tick()
        delays.append(sim.roles["web"].backoff_until - sim.now)
        sim.now = sim.roles["web"].backoff_until
    assert delays == [1, 2, 4, 8, 8, 8]


def test_the_backoff_resets_once_a_node_outlives_the_early_window() -> None:
    sim = Sim.of(farm(1, health=False))
    sim.tick()
    sim.seen["web-1"] = NodeSeen(alive=False, exit_code=1)
    sim.tick()
    sim.now += 1
    sim.tick()
    sim.tick()
    assert sim.roles["web"].failures == 1
    sim.now += 31
    sim.tick()
    assert sim.roles["web"].failures == 0


def test_an_unhealthy_node_is_stopped_then_restarted_in_its_slot() -> None:
    sim = Sim.of(farm(2))
    sim.settle()
    sim.seen["web-1"] = NodeSeen(alive=True, health=Health.UNHEALTHY, health_detail="GET / answered 503")
    actions = sim.tick()
    stop = next(x for x in actions if isinstance(x, a.StopNode))
    assert stop.node_id == "web-1" and stop.failure and "503" in stop.reason
    assert not any(isinstance(x, a.CreateNode) for x in actions), "the slot is kept, not doubled"
    sim.seen["web-1"] = NodeSeen(alive=False)
    assert sim.tick() == [a.NodeGone("web-1", a.OnStop.RESTART)]
    sim.now += 5
    assert sim.tick() == [a.StartNode("web-1")]


def test_a_node_that_ignores_its_stop_signal_is_killed_after_the_grace() -> None:
    sim = Sim.of(farm(1, extra='stop_grace = "5s"'))
    sim.settle()
    sim.scaled("web", 0)
    sim.tick()
    assert sim.nodes["web-1"].state == NodeState.STOPPING
    sim.now += 4.9
    assert sim.tick() == []
    sim.now += 0.2
    assert [type(x) for x in sim.tick()] == [a.KillNode]


def test_scale_in_drains_first_when_the_role_has_a_load_balancer() -> None:
    sim = Sim.of(farm(3, extra='lb = { listen = "127.0.0.1:9000" }'), lb_roles=frozenset({"web"}))
    sim.settle()
    sim.scaled("web", 1)
    actions = sim.tick()
    assert [x.node_id for x in actions if isinstance(x, a.DrainNode)] == ["web-3", "web-2"], "newest first"
    sim.seen["web-3"] = NodeSeen(alive=True, in_flight=2)
    sim.seen["web-2"] = NodeSeen(alive=True, in_flight=0)
    actions = sim.tick()
    assert [x.node_id for x in actions if isinstance(x, a.StopNode)] == ["web-2"], "web-3 still has requests in flight"


def test_drain_timeout_stops_a_node_with_requests_still_open() -> None:
    sim = Sim.of(farm(1, extra='lb = { listen = "127.0.0.1:9000", drain_timeout = "3s" }'), lb_roles=frozenset({"web"}))
    sim.settle()
    sim.scaled("web", 0)
    sim.tick()
    sim.seen["web-1"] = NodeSeen(alive=True, in_flight=5)
    sim.now += 3
    stop = next(x for x in sim.tick() if isinstance(x, a.StopNode))
    assert "drain timeout (5 still open)" in stop.reason


def test_a_changed_command_rolls_out_one_node_at_a_time() -> None:
    sim = Sim.of(farm(3))
    sim.settle()
    old = set(sim.nodes)
    sim.spec = Sim.of(farm(3).replace("app --port", "app2 --port")).spec
    sim.settle(ticks=100)
    assert not old & set(sim.nodes) and len(sim.nodes) == 3
    running_old_and_new = 3
    for action in sim.log:
        if isinstance(action, a.MarkRunning) and action.node_id not in old:
            running_old_and_new += 1
        if isinstance(action, (a.DrainNode, a.StopNode)) and action.node_id in old:
            running_old_and_new -= 1
            assert running_old_and_new >= 3
    assert max(len([x for x in sim.log if isinstance(x, a.CreateNode) and x.node_id not in old]), 0) == 3


def test_replace_marks_start_a_new_node_before_the_old_one_goes() -> None:
    sim = Sim.of(farm(2))
    sim.settle()
    sim.nodes["web-1"] = sim.nodes["web-1"].replace(mark=Mark.REPLACE)
    actions = sim.tick()
    assert [type(x) for x in actions] == [a.CreateNode, a.StartNode]
    sim.settle()
    assert sorted(sim.nodes) == ["web-1.2", "web-2"], "the replacement keeps web-1's slot, one generation on"


def test_a_removed_role_is_stopped_and_a_shutdown_stops_everything() -> None:
    sim = Sim.of(farm(2))
    sim.settle()
    sim.shutting_down = True
    sim.settle()
    assert sim.nodes == {}


def test_spread_places_nodes_evenly_and_respects_capacity() -> None:
    hosts = textwrap.dedent("""
        [hosts.a]
        driver = "local"
        [hosts.b]
        driver = "local"
        capacity = { nodes = 1 }
        [hosts.c]
        driver = "local"
        """)
    sim = Sim.of(farm(5, hosts=hosts))
    sim.settle()
    per_host = sorted(n.host for n in sim.nodes.values())
    assert per_host.count("b") == 1
    assert per_host.count("a") == 2 and per_host.count("c") == 2


def test_a_node_that_cannot_be_placed_is_reported_not_created() -> None:
    hosts = '[hosts.a]\ndriver = "local"\ncapacity = { nodes = 1 }\n'
    sim = Sim.of(farm(1, hosts=hosts))
    sim.scaled("web", 2)
    actions = sim.tick()
    notes = [x for x in actions if isinstance(x, a.Note) and x.kind == "node.unplaceable"]
    assert len(sim.nodes) == 1 and notes and "a is full (1 nodes)" in notes[0].message


@given(
    count=st.integers(0, 6),
    wanted=st.one_of(st.none(), st.integers(0, 12)),
    bounds=st.tuples(st.integers(0, 4), st.integers(4, 8)),
    use_bounds=st.booleans(),
)
def test_the_farm_settles_at_the_wanted_count_within_bounds(count: int, wanted: int | None,
                                                          bounds: tuple[int, int], use_bounds: bool) -> None:
    extra = f"min = {bounds[0]}\nmax = {bounds[1]}" if use_bounds else ""
    text = farm(count).replace(f"count = {count}\n", "" if use_bounds else f"count = {count}\n") + ""
    text = text.replace("[roles.web]\n", f"[roles.web]\n{extra}\n")
    sim = Sim.of(text)
    sim.scaled("web", wanted)
    sim.settle(ticks=200)
    role = sim.spec.roles["web"]
    expected = role.clamp(wanted if wanted is not None else role.initial_count)
    assert len(sim.nodes) == expected
    if role.max is not None:
        assert len(sim.nodes) <= role.max
    assert len(sim.nodes) >= role.lower_bound


@given(st.lists(st.sampled_from(["crash", "sick", "heal", "scale", "change", "tick"]), max_size=40),
       st.integers(1, 5))
def test_any_story_of_failures_ends_with_a_settled_current_farm(story: list[str], count: int) -> None:
    """Whatever happens, once the world behaves the farm converges: the wanted count, every
    node running the current version, never more than wanted + 1 slots at once."""
    sim = Sim.of(farm(count))
    versions = ["app", "app2", "app3"]
    for step, event in enumerate(story):
        live = [n for n in sim.nodes.values() if n.state in (NodeState.STARTING, NodeState.RUNNING)]
        if event == "crash" and live:
            sim.seen[live[step % len(live)].id] = NodeSeen(alive=False, exit_code=1)
        elif event == "sick" and live:
            sim.seen[live[step % len(live)].id] = NodeSeen(alive=True, health=Health.UNHEALTHY)
        elif event == "heal":
            sim.all_healthy()
            sim.stopped_ones_exit()
        elif event == "scale":
            sim.scaled("web", (step % 4) + 1)
        elif event == "change":
            sim.spec = Sim.of(farm(count).replace("app --port", f"{versions[step % 3]} --port")).spec
        sim.now += 0.5
        sim.tick()
        active = [n for n in sim.nodes.values() if n.state != NodeState.STOPPING and n.state != NodeState.DRAINING]
        assert len(active) <= wanted_count(sim.spec.roles["web"], sim.roles.get("web", RoleState("web"))) + 1
    sim.now += 100
    sim.settle(ticks=300)
    role = sim.spec.roles["web"]
    assert len(sim.nodes) == wanted_count(role, sim.roles.get("web", RoleState("web")))
    assert all(n.fingerprint == role.fingerprint() and n.state == NodeState.RUNNING for n in sim.nodes.values())
