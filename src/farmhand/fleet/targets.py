"""Targets: what ``farmhand exec TARGET`` means, as a set of the farm's hosts.

The syntax is ClusterShell's ``NodeSet`` (``web[01-20]``, ``10.213.0.[2-9]``,
``web[1-10]!web3``, ``@web&@zone-a``; ``,`` union, ``!`` difference, ``&`` intersection,
``^`` symmetric difference), with ``@NAME`` resolved here: a ``[groups]`` entry of the farm
file, else a role (the hosts that run it). A name that is both is refused rather than
guessed. Expanding is pure: the farm's groups, role placements and hosts come in as values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupSource

from farmhand.errors import RequestError
from farmhand.spec.models import FarmSpec

_GROUP_REFERENCE = re.compile(r"@([A-Za-z0-9_.:\-]+)")


@dataclass(frozen=True)
class Inventory:
    """What a target is resolved against: groups (name -> patterns), the hosts each role runs
    on, and the farm's hosts with their addresses (an address names its host too)."""

    groups: Mapping[str, list[str]] = field(default_factory=dict)
    roles: Mapping[str, list[str]] = field(default_factory=dict)
    hosts: Mapping[str, str | None] = field(default_factory=dict)
    """Host name -> its address (None for local and fake hosts)."""


class _FarmGroups(GroupSource):  # type: ignore[misc]
    """ClusterShell asks this for ``@name``; unknown names raise instead of being empty."""

    def __init__(self, inventory: Inventory) -> None:
        super().__init__("farm")
        self._inventory = inventory
        self._depth = 0

    def resolv_map(self, group: str) -> str:
        ambiguous = group in self._inventory.groups and group in self._inventory.roles
        if ambiguous:
            raise RequestError(f"@{group} is both a group and a role; rename the group in [groups]", "target")
        if group in self._inventory.groups:
            self._depth += 1
            try:
                if self._depth > 16:
                    raise RequestError(f"group @{group} refers to itself (through its members)", "target")
                members = [str(NodeSet(m, resolver=_resolver(self))) for m in self._inventory.groups[group]]
            finally:
                self._depth -= 1
            return ",".join(m for m in members if m)
        if group in self._inventory.roles:
            return ",".join(sorted(self._inventory.roles[group]))
        known = sorted({*self._inventory.groups, *self._inventory.roles})
        raise RequestError(f"no group or role @{group} (known: {', '.join(known) or 'none'})", "target")

    def resolv_list(self) -> list[str]:
        return sorted({*self._inventory.groups, *self._inventory.roles})


def _resolver(source: _FarmGroups) -> GroupResolver:
    return GroupResolver(source, illegal_chars=set())


def node_set(pattern: str, inventory: Inventory) -> NodeSet:
    """The pattern as a ``NodeSet`` with every ``@name`` resolved; a clear error otherwise."""
    text = pattern.strip()
    if not text:
        raise RequestError("empty target: name hosts, @group, @role or a pattern such as web[1-3]", "target")
    try:
        return NodeSet(text, resolver=_resolver(_FarmGroups(inventory)))
    except NodeSetException as error:
        cause = error.__context__
        if isinstance(cause, RequestError):
            raise cause from None
        raise RequestError(f"target {pattern!r} is not a node set: {error}", "target") from None


def expand(pattern: str, inventory: Inventory) -> list[str]:
    return list(node_set(pattern, inventory))


def fold(names: Iterable[str]) -> str:
    """``h1 h2 h3 h10`` -> ``h[1-3,10]``."""
    return str(NodeSet.fromlist(list(names)))


def hosts_of(pattern: str, inventory: Inventory) -> list[str]:
    """The farm's hosts a target names, in the target's order; a name that is neither a host
    nor a host's address is refused, naming it (a typo must not shrink the fleet silently)."""
    by_address = {address: name for name, address in inventory.hosts.items() if address}
    chosen: list[str] = []
    unknown: list[str] = []
    for name in expand(pattern, inventory):
        host = name if name in inventory.hosts else by_address.get(name)
        if host is None:
            unknown.append(name)
        elif host not in chosen:
            chosen.append(host)
    if unknown:
        raise RequestError(f"not hosts of this farm: {fold(unknown)} (hosts: {fold(inventory.hosts) or 'none'})",
                           "target")
    if not chosen:
        raise RequestError(f"target {pattern!r} names no host", "target")
    return chosen


def inventory_of(spec: FarmSpec, role_hosts: Mapping[str, list[str]] | None = None) -> Inventory:
    """The inventory of a farm file. ``role_hosts``: where each role's nodes run (the
    controller knows); without it (no controller), a role means the hosts it may be placed
    on (those carrying its ``require`` labels)."""
    if role_hosts is None:
        role_hosts = {
            role: [name for name, host in spec.hosts.items()
                   if all(host.labels.get(k) == v for k, v in spec_role.require.items())]
            for role, spec_role in spec.roles.items()
        }
    return Inventory(groups=dict(spec.groups), roles=dict(role_hosts),
                     hosts={name: host.address for name, host in spec.hosts.items()})
