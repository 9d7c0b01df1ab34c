"""Reverse-DNS classes: what a lookup found, and which delay class that puts a client in.

Pure: no DNS here. A lookup (``resolve.py``, or tcpserver through TCPREMOTEHOST) produces an
``Rdns`` record; ``classify`` turns it into one of four classes:

    static    a name that resolves back to the client and does not look like an end user's
    dynamic   a name that resolves back but looks dynamic (dsl, pool, cable, IP in the name)
    mismatch  a PTR name that does not resolve back to the client, or a DNS failure
    no_ptr    no PTR record at all

The built-in dynamic rules follow the spirit of SpamAssassin's ``20_dynrdns.cf``: tell-tale
labels and the client's own address written into the name, anchored on label boundaries so
that ``mx1.generaldynamics.com`` stays static, with ``static``/``fix`` labels as exceptions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RdnsClass = Literal["static", "dynamic", "mismatch", "no_ptr"]
CLASSES: tuple[RdnsClass, ...] = ("static", "dynamic", "mismatch", "no_ptr")
Outcome = Literal["confirmed", "mismatch", "dns_failure", "no_ptr"]

# A label boundary is the start or end of the name, a dot, a dash or a digit, so that
# "dsl123", "pool-7" and "dyn.isp" match while "generaldynamics" and "resolver" do not.
_B = r"(?:^|(?<=[.\-0-9]))"
_E = r"(?=$|[.\-0-9])"
_DYNAMIC_WORDS = (
    "dyn", "dynamic", "dynip", "dhcp", "dsl", "adsl", "xdsl", "vdsl", "cable", "cpe", "pool",
    "ppp", "pppoe", "dial", "dialup", "dialin", "res", "resi", "client", "clients",
    "broadband", "ftth", "fttx", "catv", "cust", "customer", "docsis",
)
BUILTIN_DYNAMIC = (
    re.compile(_B + "(?:" + "|".join(_DYNAMIC_WORDS) + ")" + _E),
)
BUILTIN_STATIC = re.compile(_B + "(?:static|fix|fixed)" + _E)


@dataclass(frozen=True, slots=True)
class Rdns:
    """What the reverse lookup of one client address found.

    ``name`` is the PTR name (lower case, no final dot) when there was one; with
    ``outcome == "confirmed"`` it also resolves back to the client.
    """

    outcome: Outcome
    name: str | None = None


@dataclass(frozen=True)
class DynamicRules:
    """How to tell a dynamic-looking name. ``patterns is None`` means the built-in rules
    (labels, the address in the name, static exceptions); user patterns replace all of it."""

    patterns: tuple[re.Pattern[str], ...] | None = None

    @classmethod
    def from_texts(cls, texts: Sequence[str] | None) -> DynamicRules:
        """Compile user regexes (case-insensitive); ``re.error`` names the bad one."""
        if texts is None:
            return cls(None)
        return cls(tuple(re.compile(text, re.IGNORECASE) for text in texts))

    def looks_dynamic(self, name: str, ip: str) -> bool:
        name = normalise_name(name)
        if self.patterns is not None:
            return any(pattern.search(name) for pattern in self.patterns)
        host_part = _host_part(name)
        if BUILTIN_STATIC.search(host_part):
            return False
        return address_in_name(ip, host_part) or any(p.search(host_part) for p in BUILTIN_DYNAMIC)


def classify(rdns: Rdns, ip: str, rules: DynamicRules) -> RdnsClass:
    """The delay class of a client whose lookup found ``rdns``."""
    if rdns.outcome == "no_ptr":
        return "no_ptr"
    if rdns.outcome != "confirmed" or not rdns.name:
        return "mismatch"
    return "dynamic" if rules.looks_dynamic(rdns.name, ip) else "static"


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _host_part(name: str) -> str:
    """The labels left of the registered domain (roughly: all but the last two), where ISPs
    write what kind of line a client is on; "dsl.example" is an ISP's domain, not a host."""
    return ".".join(name.split(".")[:-2])


def address_in_name(ip: str, name: str) -> bool:
    """Whether the client's address is written into ``name``: its IPv4 octets in order or
    reversed (three or four of them as separate numbers, or all zero-padded), or as 8 hex
    digits; for IPv6, the last four groups in hex (separate or run together)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address):
        groups = address.exploded.split(":")[-4:]
        tokens = re.findall(r"[0-9a-f]+", name)
        return _contains_run(tokens, groups) or any("".join(groups) in token for token in tokens)
    octets = [str(part) for part in address.packed]
    numbers = re.findall(r"\d+", name)
    for order in (octets, octets[::-1]):
        for width in (4, 3):
            for start in range(len(order) - width + 1):
                window = order[start:start + width]
                if _contains_run(numbers, window):
                    return True
        padded = "".join(part.zfill(3) for part in order)
        if any(padded in number for number in numbers):
            return True
    return address.packed.hex() in name


def _contains_run(numbers: list[str], run: list[str]) -> bool:
    """Whether ``run`` appears as consecutive items of ``numbers`` (leading zeros ignored).
    Callers pass runs of three or more, so one stray number never counts."""
    stripped = [n.lstrip("0") or "0" for n in numbers]
    wanted = [n.lstrip("0") or "0" for n in run]
    return any(stripped[i:i + len(wanted)] == wanted for i in range(len(stripped) - len(wanted) + 1))
