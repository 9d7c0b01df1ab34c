"""Who skips the delay: the allowlist and the pass cache.

Pure apart from the injected clock. Name suffixes are matched only against names that
resolve back to the client: a PTR record says whatever its address's owner wants, so an
unconfirmed "mx.example.com" proves nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from farmhand.clock import Clock
from farmhand.gate.policy import GateUsageError
from farmhand.gate.rdns import normalise_name

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allowlist:
    """CIDRs and name suffixes that skip the delay."""

    networks: tuple[IpNetwork, ...] = ()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Each entry is a CIDR or address ("192.0.2.0/24", "2001:db8::1") or a name suffix
        ("example.com" allows it and every name under it)."""
        networks: list[IpNetwork] = []
        suffixes: list[str] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            suffix = normalise_name(entry).lstrip(".")
            if not suffix or " " in suffix or "/" in suffix:
                raise GateUsageError(f"allowlist entry {entry!r} is neither a CIDR nor a name suffix")
            suffixes.append(suffix)
        return cls(tuple(networks), tuple(suffixes))

    def allows_address(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks if network.version == address.version)

    def allows_name(self, confirmed_name: str | None) -> bool:
        if not confirmed_name or not self.suffixes:
            return False
        name = normalise_name(confirmed_name)
        return any(name == suffix or name.endswith("." + suffix) for suffix in self.suffixes)


class PassCache:
    """Addresses that waited politely, remembered for ``ttl`` seconds (postscreen's idea:
    a real MTA that passed once does not wait again). Bounded: the oldest entry goes first."""

    def __init__(self, ttl: float, max_size: int, clock: Clock) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<PassCache [{len(self._expiry)}/{self.max_size} | ttl {self.ttl:g}s]>"

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, ip: str) -> None:
        if self.max_size <= 0 or self.ttl <= 0:
            return
        self._expiry.pop(ip, None)
        while len(self._expiry) >= self.max_size:
            del self._expiry[next(iter(self._expiry))]
        self._expiry[ip] = self._clock.now() + self.ttl

    def fresh(self, ip: str) -> bool:
        expiry = self._expiry.get(ip)
        if expiry is None:
            return False
        if expiry <= self._clock.now():
            del self._expiry[ip]
            return False
        return True
