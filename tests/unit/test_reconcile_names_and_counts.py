"""Node names that keep meaning, counts whose origin is clear, bounded work per tick, and
backoff that counts a shared failure once (issues 10 and 11)."""

from __future__ import annotations

import textwrap

from farmhand.controller.decide import actions as a
from farmhand.controller.decide.observed import NodeSeen
from farmhand.controller.decide.reconcile import MAX_CREATES_PER_TICK, count_source, wanted_count
from farmhand.records import Mark, NodeState, RoleState, node_id, parse_node_id
from farmhand.spec import parse_farm
from tests.unit.sim import Sim


def farm(count: int = 3, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [farm]
        restart_backoff = "1s"
        restart_backoff_max = "60s"
        [roles.web]
        command = "app --port {{port}}"
        count = {count}
        {extra}
        [roles.web.health]
        type = "http"
        """)


def test_names_read_back_into_role_slot_and_generation() -> None:
    assert node_id("web", 3) == "web-3" and node_id("web", 3, 2) == "web-3.2"
    assert parse_node_id("web-3.2") == ("web", 3, 2) and parse_node_id("my-db-12") == ("my-db", 12, 1)
    assert parse_node_id("odd") == ("odd", 0, 1)


def test_a_new_node_takes_the_lowest_free_slot() -> None:
    sim = Sim.of(farm(3))
    sim.settle()
    sim.seen["web-2"] = NodeSeen(alive=True)
    sim.nodes["web-2"] = sim.nodes["web-2"].replace(mark=Mark.REMOVE)
    sim.scaled("web", 2)
    sim.settle()
    assert sorted(sim.nodes) == ["web-1", "web-3"]
    sim.scaled("web", 4)
    sim.settle()
    assert sorted(sim.nodes) == ["web-1", "web-2", "web-3", "web-4"], "the hole is filled first"


def test_a_replacement_keeps_its_slot_one_generation_on() -> None:
    sim = Sim.of(farm(2))
    sim.settle()
    sim.nodes["web-2"] = sim.nodes["web-2"].replace(mark=Mark.REPLACE)
    sim.settle()
    assert sorted(sim.nodes) == ["web-1", "web-2.2"]
    sim.nodes["web-2.2"] = sim.nodes["web-2.2"].replace(mark=Mark.REPLACE)
    sim.settle()
    assert sorted(sim.nodes) == ["web-1", "web-2.3"]


def test_a_rollout_names_each_new_node_after_the_one_it_replaces() -> None:
    sim = Sim.of(farm(3))
    sim.settle()
    sim.spec = parse_farm(farm(3).replace("app --port", "app2 --port"))
    sim.settle(ticks=100)
    assert sorted(sim.nodes) == ["web-1.2", "web-2.2", "web-3.2"]


def test_a_huge_count_is_worked_off_in_bounded_batches() -> None:
    sim = Sim.of(farm(1))
    sim.scaled("web", 3 * MAX_CREATES_PER_TICK + 7)
    first = sim.tick()
    assert sum(isinstance(x, a.CreateNode) for x in first) == MAX_CREATES_PER_TICK
    sim.now += 0.1
    sim.tick()
    sim.now += 0.1
    sim.tick()
    sim.now += 0.1
    sim.tick()
    assert len(sim.nodes) == 3 * MAX_CREATES_PER_TICK + 7


def test_nodes_that_fail_together_count_as_one_failure() -> None:
    sim = Sim.of(farm(3))
    sim.settle()
    for name in ("web-1", "web-2", "web-3"):
        sim.seen[name] = NodeSeen(alive=False, exit_code=1)
    sim.tick()
    assert sim.roles["web"].failures == 1, "three nodes of one release died at once: one cause"
    notes = [x for x in sim.log if isinstance(x, a.Note) and x.kind == "role.backoff"]
    assert len(notes) == 1 and "1 early failure(s)" in notes[0].message


def test_a_node_started_after_the_last_failure_counts_again() -> None:
    sim = Sim.of(farm(1))
    sim.settle()
    sim.seen["web-1"] = NodeSeen(alive=False, exit_code=1)
    sim.tick()
    sim.now += 2  # past the 1s backoff: restarted
    sim.tick()
    assert sim.nodes["web-1"].state == NodeState.STARTING
    sim.now += 0.5
    sim.seen["web-1"] = NodeSeen(alive=False, exit_code=1)
    sim.tick()
    assert sim.roles["web"].failures == 2 and sim.roles["web"].backoff_until == sim.now + 2.0


def test_a_count_set_by_hand_lives_until_the_file_says_otherwise() -> None:
    role = parse_farm(farm(3)).roles["web"]
    scaled = RoleState("web", wanted=5, wanted_by="scale", file_bounds=role.bounds)
    assert (wanted_count(role, scaled), count_source(role, scaled)) == (5, "scale")
    edited = parse_farm(farm(2)).roles["web"]
    assert (wanted_count(edited, scaled), count_source(edited, scaled)) == (2, "file"), "an edited count applies"
    assert count_source(role, RoleState("web")) == "file"
    autoscaled = RoleState("web", wanted=4, wanted_by="autoscaler", file_bounds=role.bounds)
    assert count_source(role, autoscaled) == "autoscaler"


def test_a_nodes_end_has_one_wording_with_its_status_where_known() -> None:
    from farmhand.controller.decide.reconcile import exit_wording

    assert exit_wording(3) == "exited with code 3"
    assert exit_wording(-9) == "exited: killed by signal 9 (SIGKILL)"
    assert exit_wording(None) == "exited (exit status unknown)"


def test_a_removed_nodes_kill_waits_for_its_pre_stop_hook_too() -> None:
    sim = Sim.of(farm(2, extra='stop_grace = "2s"\npre_stop = { command = "retire {node}", timeout = "30s" }'))
    sim.settle()
    sim.scaled("web", 1)
    sim.tick()
    stopping = sim.by_state(NodeState.STOPPING)
    assert len(stopping) == 1
    sim.now += 10  # past stop_grace, within stop_grace + the hook's timeout
    assert not any(isinstance(x, a.KillNode) for x in sim.tick())
    sim.now += 25
    assert any(isinstance(x, a.KillNode) for x in sim.tick())


def test_a_pre_stop_hook_needs_one_way_to_run() -> None:
    from farmhand.errors import SpecError

    cases = [('{ timeout = "1s" }', "give either"), ('{ http = "retire" }', "must be a path"),
             ('{ command = "x {nope}" }', "unknown placeholder {nope}")]
    for bad, says in cases:
        try:
            parse_farm(farm(1, extra=f"pre_stop = {bad}"))
        except SpecError as error:
            assert says in str(error), str(error)
        else:
            raise AssertionError(f"accepted {bad}")
