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
    nodes = list(nodes)
    per_host_total = Counter(n.host for n in nodes)
    per_host_role = Counter(n.host for n in nodes if n.role == role_name)
    fitting = []
    refusals = []
    for host in hosts.values():
        if not host.up:
            refusals.append(f"{host.name} is down")
        elif host.drained:
            refusals.append(f"{host.name} is drained")
        elif any(host.labels.get(k) != v for k, v in role.require.items()):
            refusals.append(f"{host.name} lacks {_labels(role.require)}")
        elif host.max_nodes is not None and per_host_total[host.name] >= host.max_nodes:
            refusals.append(f"{host.name} is full ({host.max_nodes} nodes)")
        else:
            fitting.append(host)
    if not fitting:
        return Placement(None, "no host fits: " + "; ".join(refusals) if refusals else "no hosts")
    order = {name: i for i, name in enumerate(hosts)}
    if role.placement == "pack":
        best = min(fitting, key=lambda h: (-per_host_role[h.name], -per_host_total[h.name], order[h.name]))
        return Placement(best.name)
    if role.spread:
        per_value = Counter(hosts[n.host].labels.get(role.spread, "") for n in nodes
                            if n.role == role_name and n.host in hosts)
        best = min(fitting, key=lambda h: (per_value[h.labels.get(role.spread or "", "")],
                                           per_host_role[h.name], per_host_total[h.name], order[h.name]))
        return Placement(best.name)
    best = min(fitting, key=lambda h: (per_host_role[h.name], per_host_total[h.name], order[h.name]))
    return Placement(best.name)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())
