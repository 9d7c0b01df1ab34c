"""Which host a new node goes to.

Like OpenNebula's rank: hosts that fit (up, not drained, carrying the required labels,
under their node capacity) are ranked by the role's strategy. ``spread`` (the default)
picks the host, or the label value, with the fewest nodes of this role; ``pack`` the one with
the most nodes already, so whole hosts stay free. Ties go to the host named first.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from farmhand.controller.decide.observed import HostView
from farmhand.records import NodeRecord
from farmhand.spec.models import RoleSpec


@dataclass(frozen=True)
class Placement:
    host: str | None
    reason: str = ""


def place(role_name: str, role: RoleSpec, hosts: dict[str, HostView], nodes: Iterable[NodeRecord]) -> Placement:
    """The host for one more node of ``role_name``, or None with the reason."""
    return place_many(role_name, role, hosts, nodes, 1)[0]


def place_many(role_name: str, role: RoleSpec, hosts: dict[str, HostView], nodes: Iterable[NodeRecord],
               count: int) -> list[Placement]:
    """Hosts for ``count`` more nodes, each placed as if the ones before it were already
    there. The list stops at the first node that fits nowhere (its Placement says why).

    The farm is counted once and the fitting hosts kept in a heap by rank, so placing many
    nodes costs about count x log(hosts), not count x hosts. The heap is lazy: a placement
    only ever raises other hosts' ranks (spread across a label counts the label's value for
    all its hosts), so an entry whose rank went stale is pushed back with its true rank when
    popped, and the first entry popped with a true rank is the best host.
    """
    nodes = list(nodes)
    per_host_total = Counter(n.host for n in nodes)
    per_host_role = Counter(n.host for n in nodes if n.role == role_name)
    per_value = Counter(hosts[n.host].labels.get(role.spread, "") for n in nodes
                        if role.spread and n.role == role_name and n.host in hosts)
    order = {name: i for i, name in enumerate(hosts)}

    def rank(host: HostView) -> tuple[int, ...]:
        if role.placement == "pack":
            return (-per_host_role[host.name], -per_host_total[host.name], order[host.name])
        if role.spread:
            return (per_value[host.labels.get(role.spread, "")], per_host_role[host.name],
                    per_host_total[host.name], order[host.name])
        return (per_host_role[host.name], per_host_total[host.name], order[host.name])

    heap = [(rank(host), host.name) for host in hosts.values() if _refusal(role, host, per_host_total) is None]
    heapq.heapify(heap)
    placements = []
    for _ in range(count):
        chosen = _pop_best(heap, hosts, rank)
        if chosen is None:
            refusals = [r for host in hosts.values() if (r := _refusal(role, host, per_host_total))]
            placements.append(Placement(None, "no host fits: " + "; ".join(refusals) if refusals else "no hosts"))
            break
        placements.append(Placement(chosen.name))
        per_host_total[chosen.name] += 1
        per_host_role[chosen.name] += 1
        if role.spread:
            per_value[chosen.labels.get(role.spread, "")] += 1
        if chosen.max_nodes is None or per_host_total[chosen.name] < chosen.max_nodes:
            heapq.heappush(heap, (rank(chosen), chosen.name))
    return placements


def _pop_best(heap: list[tuple[tuple[int, ...], str]], hosts: dict[str, HostView],
              rank: Callable[[HostView], tuple[int, ...]]) -> HostView | None:
    while heap:
        stored, name = heapq.heappop(heap)
        true = rank(hosts[name])
        if true == stored:
            return hosts[name]
        heapq.heappush(heap, (true, name))
    return None


def _refusal(role: RoleSpec, host: HostView, per_host_total: Counter[str]) -> str | None:
    """Why ``host`` takes no node of ``role`` now, or None when it fits."""
    if not host.up:
        return f"{host.name} is down"
    if host.drained:
        return f"{host.name} is drained"
    if any(host.labels.get(k) != v for k, v in role.require.items()):
        return f"{host.name} lacks {_labels(role.require)}"
    if host.max_nodes is not None and per_host_total[host.name] >= host.max_nodes:
        return f"{host.name} is full ({host.max_nodes} nodes)"
    return None


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())
