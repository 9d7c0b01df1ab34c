"""Passive transitions as a spec (issue 12): adoption and strays are decided, not done while
observing; a failed start's backoff is decided by reconcile, not by the act phase."""

from __future__ import annotations

import textwrap

from farmhand.controller.decide import actions as a
from farmhand.controller.decide.observed import ProcessSeen, World
from farmhand.controller.decide.passive import STRAY_GRACE, take_in
from farmhand.records import NodeState
from tests.unit.sim import Sim


def world(now: float, adoptable: tuple[ProcessSeen, ...] = (), strays: tuple[ProcessSeen, ...] = ()) -> World:
    return World(now, {}, {}, adoptable=adoptable, strays=strays)


def test_a_known_nodes_process_with_another_pid_is_adopted() -> None:
    process = ProcessSeen("h1", "web-1", 4242, 17.5)
    actions, memory = take_in(world(100.0, adoptable=(process,)), {})
    assert actions == [a.AdoptNode("web-1", "h1", 4242, 17.5)] and memory == {}


def test_a_stray_is_asked_to_stop_once_then_killed_after_the_grace() -> None:
    stray = ProcessSeen("h3", "web-2", 77, 5.0)
    actions, memory = take_in(world(100.0, strays=(stray,)), {})
    assert [type(x) for x in actions] == [a.Note, a.SignalStray]
    assert actions[1] == a.SignalStray("h3", "web-2", 77, 5.0, "TERM") and memory == {"h3/web-2": 100.0}
    actions, memory = take_in(world(105.0, strays=(stray,)), memory)
    assert actions == [], "still within its grace: nothing more"
    actions, memory = take_in(world(100.0 + STRAY_GRACE + 1, strays=(stray,)), memory)
    assert actions == [a.SignalStray("h3", "web-2", 77, 5.0, "KILL")]
    assert take_in(world(200.0), memory) == ([], {}), "gone: forgotten"


def test_a_failed_start_counts_towards_backoff_as_a_decision() -> None:
    sim = Sim.of(textwrap.dedent("""\
        [farm]
        restart_backoff = "1s"
        [roles.web]
        command = "app"
        count = 2
        """))
    sim.tick()
    for name in ("web-1", "web-2"):  # both starts failed: the port was taken
        sim.nodes[name] = sim.nodes[name].replace(state=NodeState.PENDING, pid=None, state_since=sim.now)
    sim.now += 0.1
    failures = {"web-1": "port 80 is already in use", "web-2": "port 80 is already in use"}
    actions = sim.tick_with(start_failures=failures)
    notes = [x for x in actions if isinstance(x, a.Note) and x.kind == "node.start_failed"]
    assert [n.node for n in notes] == ["web-1", "web-2"]
    assert "could not start: port 80 is already in use; next try in 1s" in notes[0].message
    assert sim.roles["web"].failures == 1, "two nodes failing together count once"
    assert not any(isinstance(x, a.StartNode) for x in actions), "they wait for the backoff"
