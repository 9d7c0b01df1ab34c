"""Scale-in goes through the ordinary reconcile: it drains the victims through the load
balancer, chosen by the role's ``autoscale.victims`` rule."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field

import pytest

from farmhand.controller.decide import actions as a
from farmhand.controller.decide.observed import World
from farmhand.records import NodeState
from tests.unit.sim import Sim


@dataclass
class LoadSim(Sim):
    """A Sim whose world also reports how busy each node is."""

    load: dict[str, float] = field(default_factory=dict)

    def world(self) -> World:
        return dataclasses.replace(super().world(), load=dict(self.load))


def farm(victims: str | None) -> str:
    rule = f'victims = "{victims}"\n' if victims else ""
    return textwrap.dedent("""\
        [roles.web]
        command = "app --port {port}"
        min = 1
        max = 5
        lb = { listen = "127.0.0.1:9000" }
        [roles.web.health]
        type = "http"
        [roles.web.autoscale]
        """) + rule + 'target = [{ metric = "requests_per_s", value = 100 }]\n'


def scaled_in(victims: str | None, load: dict[str, float] | None = None) -> list[str]:
    sim = LoadSim.of(farm(victims), lb_roles=frozenset({"web"}))
    sim.scaled("web", 4)
    sim.settle()
    sim.load = load or {}
    sim.scaled("web", 2)
    actions = sim.tick()
    assert not [x for x in actions if isinstance(x, a.StopNode)], "nodes of a balanced role drain first"
    return [x.node_id for x in actions if isinstance(x, a.DrainNode)]


@pytest.mark.parametrize(("victims", "load", "expected"), [
    (None, None, ["web-4", "web-3"]),
    ("newest", None, ["web-4", "web-3"]),
    ("oldest", None, ["web-1", "web-2"]),
    ("least-loaded", {"web-1": 5, "web-2": 0, "web-3": 9, "web-4": 1}, ["web-2", "web-4"]),
    ("least-loaded", {"web-1": 3, "web-3": 3}, ["web-4", "web-2"]),  # unknown load: idle; ties: newest
])
def test_victims_follow_the_rule(victims: str | None, load: dict[str, float] | None, expected: list[str]) -> None:
    assert scaled_in(victims, load) == expected


def test_a_node_not_yet_ready_still_goes_first_whatever_the_rule() -> None:
    sim = LoadSim.of(farm("least-loaded"), lb_roles=frozenset({"web"}))
    sim.scaled("web", 3)
    sim.settle()
    sim.nodes["web-1"] = sim.nodes["web-1"].replace(state=NodeState.STARTING)
    sim.load = {"web-1": 50, "web-2": 0, "web-3": 50}
    sim.scaled("web", 1)
    drained = [x.node_id for x in sim.tick() if isinstance(x, a.DrainNode)]
    assert drained == ["web-1", "web-2"], "the starting one, then the least loaded"
