"""Which host a new node goes to.

Like OpenNebula's rank: hosts that fit (up, not drained, carrying the required labels,
under their node capacity) are ranked by the role's strategy. ``spread`` (the default)
picks the host, or the label value, with the fewest nodes of this role; ``pack`` the one with
the most nodes already, so whole hosts stay free. Ties go to the host named first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
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
    there; the farm is counted once, so a large scale-up costs hosts x count, not nodes x count.
    The list stops at the first node that fits nowhere (its Placement says why)."""
    nodes = list(nodes)
    per_host_total = Counter(n.host for n in nodes)
    per_host_role = Counter(n.host for n in nodes if n.role == role_name)
    per_value = Counter(hosts[n.host].labels.get(role.spread, "") for n in nodes
                        if role.spread and n.role == role_name and n.host in hosts)
    placements = []
    for _ in range(count):
        placement = _place_one(role, hosts, per_host_total, per_host_role, per_value)
        placements.append(placement)
        if placement.host is None:
            break
        per_host_total[placement.host] += 1
        per_host_role[placement.host] += 1
        if role.spread:
            per_value[hosts[placement.host].labels.get(role.spread, "")] += 1
    return placements


def _place_one(role: RoleSpec, hosts: dict[str, HostView], per_host_total: Counter[str],
               per_host_role: Counter[str], per_value: Counter[str]) -> Placement:
    fitting = [host for host in hosts.values() if _refusal(role, host, per_host_total) is None]
    if not fitting:
        refusals = [_refusal(role, host, per_host_total) for host in hosts.values()]
        return Placement(None, "no host fits: " + "; ".join(r for r in refusals if r) if refusals else "no hosts")
    order = {name: i for i, name in enumerate(hosts)}
    if role.placement == "pack":
        best = min(fitting, key=lambda h: (-per_host_role[h.name], -per_host_total[h.name], order[h.name]))
        return Placement(best.name)
    if role.spread:
        best = min(fitting, key=lambda h: (per_value[h.labels.get(role.spread or "", "")],
                                           per_host_role[h.name], per_host_total[h.name], order[h.name]))
        return Placement(best.name)
    best = min(fitting, key=lambda h: (per_host_role[h.name], per_host_total[h.name], order[h.name]))
    return Placement(best.name)


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
