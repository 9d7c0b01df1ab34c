"""Placing many nodes at once (a heap, the farm counted once) chooses exactly the hosts that
placing them one by one over the whole farm would: checked against that plain method."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from farmhand.controller.decide.observed import HostView
from farmhand.controller.decide.placement import place_many
from farmhand.records import NodeRecord, NodeState
from farmhand.spec import parse_farm


def one_by_one(role_name: str, role, hosts: dict[str, HostView], nodes: list[NodeRecord], count: int) -> list[str | None]:
    """The plain method: for each node, rank every host that fits, take the best."""
    chosen: list[str | None] = []
    nodes = list(nodes)
    order = list(hosts)
    for index in range(count):
        total = Counter(n.host for n in nodes)
        mine = Counter(n.host for n in nodes if n.role == role_name)
        value = Counter(hosts[n.host].labels.get(role.spread or "", "") for n in nodes if n.role == role_name)
        fitting = [h for h in hosts.values() if h.up and not h.drained
                   and all(h.labels.get(k) == v for k, v in role.require.items())
                   and (h.max_nodes is None or total[h.name] < h.max_nodes)]
        if not fitting:
            chosen.append(None)
            break
        if role.placement == "pack":
            best = min(fitting, key=lambda h: (-mine[h.name], -total[h.name], order.index(h.name)))
        elif role.spread:
            best = min(fitting, key=lambda h: (value[h.labels.get(role.spread, "")], mine[h.name], total[h.name],
                                               order.index(h.name)))
        else:
            best = min(fitting, key=lambda h: (mine[h.name], total[h.name], order.index(h.name)))
        chosen.append(best.name)
        nodes.append(NodeRecord(f"{role_name}-new{index}", role_name, best.name, NodeState.PENDING, "f", 0.0, 0.0))
    return chosen


hosts_strategy = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.sampled_from(["a", "b", "c"]), st.one_of(st.none(), st.integers(0, 4))),
    min_size=1, max_size=8)


@given(hosts=hosts_strategy, existing=st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=12),
       count=st.integers(1, 15), how=st.sampled_from(["spread", "pack", "zone"]))
def test_placing_many_matches_placing_one_by_one(hosts: list[tuple[bool, bool, str, int | None]],
                                                 existing: list[tuple[int, bool]], count: int, how: str) -> None:
    extra = {"spread": "", "pack": 'placement = "pack"', "zone": 'spread = "zone"'}[how]
    table = "".join(f'[hosts.h{i}]\nlabels = {{ zone = "{zone}" }}\n' for i, (_, _, zone, _) in enumerate(hosts))
    spec = parse_farm(f'{table}[roles.web]\ncommand = "x"\ncount = 1\n{extra}\n[roles.db]\ncommand = "y"\ncount = 1\n')
    views = {f"h{i}": HostView(f"h{i}", up=up, drained=drained, labels={"zone": zone}, max_nodes=cap)
             for i, (up, drained, zone, cap) in enumerate(hosts)}
    nodes = [NodeRecord(f"n{i}", "web" if web else "db", f"h{host % len(hosts)}", NodeState.RUNNING, "f", 0.0, 0.0)
             for i, (host, web) in enumerate(existing)]
    placed = [p.host for p in place_many("web", spec.roles["web"], views, nodes, count)]
    assert placed == one_by_one("web", spec.roles["web"], views, nodes, count)
