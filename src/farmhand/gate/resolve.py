"""Reverse lookup with forward confirmation, over dnspython, blocking or asyncio.

The steps are written once as a pure generator (``lookup_steps``): it yields DNS questions
and is sent their answers, so the logic is tested without DNS and the two drivers (blocking
for ``smtp-delay``, asyncio for the proxy) only translate dnspython's results. dnspython is
imported lazily: ``smtp-delay`` pays its ~100 ms import only when tcpserver gave no name.

Which server: like the djbdns-based ucspi tools, ``$DNSCACHEIP`` (one or more addresses, port
53) when set, else /etc/resolv.conf; the proxy may name one server with a port.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from farmhand.gate.rdns import Rdns, normalise_name

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.resolver

Question = tuple[str, str]
"""(name, record type): "22.0.0.127.in-addr.arpa", "PTR"."""
Answer = list[str] | Literal["nxdomain", "failure"]
"""Record texts (PTR targets or addresses), "nxdomain" for no such name or no records of
that type, "failure" for SERVFAIL, refusal, timeout or no server."""
Steps = Generator[Question, Answer, Rdns]
MAX_NAMES = 3
"""PTR names checked for confirmation; more is a sign of abuse, not of a real MTA."""


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def lookup_steps(ip: str) -> Steps:
    """PTR of ``ip``, then A/AAAA of each name until one resolves back to ``ip``."""
    answer = yield reverse_name(ip), "PTR"
    if answer == "nxdomain":
        return Rdns("no_ptr")
    if answer == "failure":
        return Rdns("dns_failure")
    names = [normalise_name(name) for name in answer if name.strip(".")][:MAX_NAMES]
    if not names:
        return Rdns("no_ptr")
    address = ipaddress.ip_address(ip)
    rdtype = "AAAA" if address.version == 6 else "A"
    failed = False
    for name in names:
        forward = yield name, rdtype
        if forward == "failure":
            failed = True
        elif forward != "nxdomain" and any(_same_address(text, address) for text in forward):
            return Rdns("confirmed", name)
    return Rdns("dns_failure" if failed else "mismatch", names[0])


def _same_address(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def servers_from_env(env: Mapping[str, str]) -> list[tuple[str, int]] | None:
    """``$DNSCACHEIP`` as (address, 53) pairs (spaces or commas between several), or None to
    use /etc/resolv.conf."""
    text = env.get("DNSCACHEIP", "").replace(",", " ").split()
    servers = []
    for item in text:
        try:
            servers.append((str(ipaddress.ip_address(item)), 53))
        except ValueError:
            continue
    return servers or None


def _configure(resolver: Any, servers: list[tuple[str, int]] | None) -> Any:
    import dns.nameserver

    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
    resolver.cache = None
    resolver.retry_servfail = False
    return resolver


def blocking_resolver(servers: list[tuple[str, int]] | None) -> dns.resolver.Resolver:
    import dns.resolver

    return _configure(dns.resolver.Resolver(configure=servers is None), servers)  # type: ignore[no-any-return]


def async_resolver(servers: list[tuple[str, int]] | None) -> dns.asyncresolver.Resolver:
    import dns.asyncresolver

    return _configure(dns.asyncresolver.Resolver(configure=servers is None), servers)  # type: ignore[no-any-return]


def _texts(answer: Any) -> list[str]:
    texts = []
    for record in answer:
        target = getattr(record, "target", None)
        texts.append(target.to_text() if target is not None else record.to_text())
    return texts


def lookup_blocking(resolver: dns.resolver.Resolver, ip: str, timeout: float) -> Rdns:
    """Run ``lookup_steps`` against DNS, giving up (as a DNS failure) after ``timeout``."""
    import dns.exception
    import dns.resolver

    deadline = time.monotonic() + timeout
    steps = lookup_steps(ip)
    question = next(steps)
    while True:
        remaining = deadline - time.monotonic()
        answer: Answer
        if remaining <= 0:
            answer = "failure"
        else:
            try:
                answer = _texts(resolver.resolve(question[0], question[1], lifetime=remaining, search=False))
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                answer = "nxdomain"
            except dns.exception.DNSException:
                answer = "failure"
        try:
            question = steps.send(answer)
        except StopIteration as done:
            result: Rdns = done.value
            return result


async def lookup_async(resolver: dns.asyncresolver.Resolver, ip: str, timeout: float) -> Rdns:
    """``lookup_blocking`` for an asyncio loop."""
    import dns.exception
    import dns.resolver

    deadline = time.monotonic() + timeout
    steps = lookup_steps(ip)
    question = next(steps)
    while True:
        remaining = deadline - time.monotonic()
        answer: Answer
        if remaining <= 0:
            answer = "failure"
        else:
            try:
                found = await resolver.resolve(question[0], question[1], lifetime=remaining, search=False)
                answer = _texts(found)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                answer = "nxdomain"
            except dns.exception.DNSException:
                answer = "failure"
        try:
            question = steps.send(answer)
        except StopIteration as done:
            result: Rdns = done.value
            return result
