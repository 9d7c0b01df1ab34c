"""The farm-file keys of a load-balancer pair: a role's balancer on two or more hosts behind a
floating address that keepalived (VRRP) moves between them.

    [roles.web.lb]
    listen = "10.213.0.100:80"     # the virtual address (or 0.0.0.0) and the port
    hosts = ["lb1", "lb2"]         # names from [hosts]; the first listed wins a cold start
    vip = "10.213.0.100/24"        # the floating address with its prefix length
    vrrp_id = 51                   # optional: VRRP's virtual router id (1-255), default from the role's name
    preempt = false                # optional: true lets a higher-priority member take the address back
    interface = "eth0"             # optional: default: the host's interface on the vip's network
    python = "/usr/bin/python3"    # optional: the Python with farmhand on the hosts, default this one's

    [roles.web.lb.tls]             # optional: HTTPS on every member, the same certificates
    listen = "10.213.0.100:443"    # (files or ACME, kept by the controller, copied to each member;
                                   #  ACME's HTTP-01 answers go to every member: the holder answers)

The SMTP gate runs as a pair too (``gate = "smtp-delay"`` with ``mode = "tcp"``): the gate
on each member instead of an engine.

Why a mixin on ``LbSpec`` rather than a sub-table: the issue's form (``hosts`` and ``vip``
beside ``listen``) reads as one balancer that happens to live on several hosts. Checks that
need the whole farm (the names exist in ``[hosts]`` and are SSH hosts) are in
:func:`pair_problems`, called from ``spec/load.py``'s cross checks, so they carry file:line.
The members' host tables are attached to the lb table once the farm is read
(:func:`attach_members`), so the controller's data-plane factory, which sees only a role,
can reach them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr, StrictBool, StrictInt, field_validator, model_validator

from farmhand.spec.types import Strict

if TYPE_CHECKING:
    from collections.abc import Mapping

PAIR_DRIVERS = frozenset({"ssh"})
"""Hosts a pair member may be: keepalived adds and removes an address on the host, so a
member is a machine of its own (the local machine would hand the controller's address around)."""
PAIR_ENGINES = frozenset({"builtin", "haproxy"})
INTERFACE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


class PairFields(Strict):
    hosts: tuple[str, ...] = ()
    vip: str | None = None
    vrrp_id: StrictInt | None = Field(default=None, ge=1, le=255)
    preempt: StrictBool = False
    interface: str | None = None
    python: str | None = None
    _members: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("vip")
    @classmethod
    def _vip_has_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "/" not in value:
            raise ValueError(f'"{value}" needs its prefix length, such as "{value}/24"')
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            raise ValueError(f'"{value}" is not an address with a prefix length (use "10.213.0.100/24")') from None
        return value

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, value: str | None) -> str | None:
        if value is not None and not INTERFACE.fullmatch(value):
            raise ValueError(f'"{value}" is not a network interface name (such as "eth0")')
        return value

    @model_validator(mode="after")
    def _pair_is_whole(self) -> PairFields:
        if not self.hosts and self.vip is None:
            for key in ("vrrp_id", "interface", "python"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for load-balancer pairs (with hosts = [...] and vip = \"...\")")
            return self
        if self.vip is None:
            raise ValueError('hosts = [...] needs vip = "ADDRESS/PREFIX", the address that moves between them')
        if len(self.hosts) < 2:
            raise ValueError("a load-balancer pair needs at least two hosts (hosts = [\"lb1\", \"lb2\"])")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts names a host twice")
        listen_host = str(getattr(self, "host_port", ("", 0))[0])
        vip_address = str(ipaddress.ip_interface(self.vip).ip)
        if listen_host not in {vip_address, "0.0.0.0", "::"}:
            raise ValueError(f"listen must be on the vip ({vip_address}:PORT) or 0.0.0.0:PORT, not {listen_host}")
        if getattr(self, "engine", "builtin") not in PAIR_ENGINES:
            raise ValueError(f"load-balancer pairs run the {' or '.join(sorted(PAIR_ENGINES))} engine")
        if getattr(self, "gate", None) is not None and getattr(self, "mode", "tcp") != "tcp":
            raise ValueError('the SMTP gate needs a tcp listener: set mode = "tcp"')
        tls = getattr(self, "tls", None)
        if tls is not None:
            tls_host = str(tls.host_port[0])
            if tls_host not in {vip_address, "0.0.0.0", "::"}:
                raise ValueError(f"tls.listen must be on the vip ({vip_address}:PORT) or 0.0.0.0:PORT, not {tls_host}")
        return self

    @property
    def is_pair(self) -> bool:
        return bool(self.hosts)

    @property
    def vip_address(self) -> str:
        return str(ipaddress.ip_interface(self.vip).ip) if self.vip else ""

    @property
    def member_hosts(self) -> dict[str, Any]:
        """The members' ``HostSpec`` tables, by name (attached when the farm was read)."""
        return dict(self._members)


def attach_members(roles: Mapping[str, Any], hosts: Mapping[str, Any]) -> None:
    """Give each pair its members' host tables (called by ``FarmSpec``'s validator).

    Private attributes are not fields: the models stay frozen and equal only when the
    members' tables are equal too, so a changed member host makes ``reload`` remake the pair."""
    for role in roles.values():
        lb = getattr(role, "lb", None)
        if lb is not None and lb.hosts:
            lb._members = {name: hosts[name] for name in lb.hosts if name in hosts}


def pair_problems(roles: Mapping[str, Any], hosts: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Problems that need the whole farm: members that are not SSH hosts of ``[hosts]``, and
    two pairs sharing a virtual router id on one network."""
    problems: list[tuple[tuple[str, ...], str]] = []
    ids: dict[int, str] = {}
    for name, role in roles.items():
        lb = getattr(role, "lb", None)
        if lb is None or not lb.hosts:
            continue
        for member in lb.hosts:
            host = hosts.get(member)
            if host is None:
                problems.append((("roles", name, "lb", "hosts"), f"{member!r} is not a host of [hosts]"))
            elif host.driver not in PAIR_DRIVERS:
                problems.append((("roles", name, "lb", "hosts"),
                                 f"{member!r} is a {host.driver} host; pair members are ssh hosts (keepalived moves an address between machines)"))
        vrrp_id = lb.vrrp_id or default_vrrp_id(name)
        if vrrp_id in ids:
            problems.append((("roles", name, "lb", "vrrp_id"),
                             f"virtual router id {vrrp_id} is also role {ids[vrrp_id]!r}'s; set vrrp_id to another one"))
        ids[vrrp_id] = name
    return problems


def default_vrrp_id(role: str) -> int:
    """A virtual router id (1-255) derived from the role's name, the same for every
    controller. Two pairs on one network need different ids: ``vrrp_id`` sets one."""
    total = 0
    for char in role.encode():
        total = (total * 31 + char) % 251
    return total + 1
