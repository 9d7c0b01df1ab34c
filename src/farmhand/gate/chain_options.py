"""The ``smtp-delay`` command line and environment, read into plain records. Pure.

    smtp-delay [-d N] [-D N] [-P N] [-N N] [-r REGEX]... [-t N] [-m TEXT] [-b] [-S] [-v] prog [arg...]

Options stop at the first non-option, like djb's tools, so the next program's own options
(``rblsmtpd -r zen.example``) pass through untouched. A usage error exits 100, as ucspi-tcp
and qmail tools do for usage errors (111 is for temporary failures).
"""

from __future__ import annotations

import getopt
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from farmhand.gate.policy import (
    DEFAULT_DELAYS,
    DEFAULT_DNS_TIMEOUT,
    DEFAULT_REJECT_TEXT,
    DelayPolicy,
    GateUsageError,
    check_delay,
)
from farmhand.gate.rdns import DynamicRules, RdnsClass

EXIT_USAGE = 100
EXIT_TEMPORARY = 111
USAGE = (
    "usage: smtp-delay [-d N] [-D N] [-P N] [-N N] [-r REGEX]... [-t N] [-m TEXT] [-b] [-S] [-v] prog [arg...]\n"
    "  -d N  delay for a confirmed static-looking name (default 2)\n"
    "  -D N  delay for a dynamic-looking name (default 8)\n"
    "  -P N  delay when the name does not resolve back, or DNS failed (default 12)\n"
    "  -N N  delay when there is no PTR record (default 20)\n"
    "  -r R  a regex for dynamic names; repeatable; replaces the built-in rules\n"
    "  -t N  longest DNS lookup, counted toward the delay (default 5)\n"
    "  -m T  the refusal text for early talkers\n"
    "  -b    refuse early talkers permanently (553, RBLSMTPD=-text) instead of 451\n"
    "  -S    standalone: answer early talkers itself instead of running prog\n"
    "  -v    log one line per connection on stderr\n"
    "delays are seconds (fractions allowed), under 300"
)
_FLAG_CLASS: dict[str, RdnsClass] = {"-d": "static", "-D": "dynamic", "-P": "mismatch", "-N": "no_ptr"}


@dataclass(frozen=True)
class ChainOptions:
    policy: DelayPolicy
    program: tuple[str, ...]
    standalone: bool = False
    verbose: bool = False
    dns_timeout: float = DEFAULT_DNS_TIMEOUT


@dataclass(frozen=True)
class ChainClient:
    """The client as tcpserver described it. ``host`` is TCPREMOTEHOST when tcpserver found
    one; ``skip`` names why there is no delay at all (None: delay it)."""

    ip: str
    host: str | None
    skip: str | None


class MissingRemoteIp(GateUsageError):
    """Not run by tcpserver (or an equivalent): there is no client address to look at."""


def parse_seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GateUsageError(f"{what}: {text!r} is not a number of seconds (such as 2 or 0.5)") from None
    if math.isnan(value) or math.isinf(value):
        raise GateUsageError(f"{what}: {text!r} is not a number of seconds (such as 2 or 0.5)")
    return value


def parse_args(argv: Sequence[str]) -> ChainOptions:
    """Options from ``argv`` (without the program name); ``GateUsageError`` says what is wrong."""
    try:
        pairs, rest = getopt.getopt(list(argv), "d:D:P:N:r:t:m:bSv")
    except getopt.GetoptError as error:
        raise GateUsageError(f"{error.msg}") from None
    delays = dict(DEFAULT_DELAYS)
    patterns: list[str] = []
    permanent = standalone = verbose = False
    dns_timeout = DEFAULT_DNS_TIMEOUT
    text: str | None = None
    for flag, value in pairs:
        if flag in _FLAG_CLASS:
            delays[_FLAG_CLASS[flag]] = check_delay(parse_seconds(value, flag), flag)
        elif flag == "-r":
            try:
                re.compile(value)
            except re.error as error:
                raise GateUsageError(f"-r {value!r} is not a regular expression ({error})") from None
            patterns.append(value)
        elif flag == "-t":
            dns_timeout = parse_seconds(value, "-t")
            if not 0 < dns_timeout <= 60:
                raise GateUsageError(f"-t {value}: the DNS timeout must be above 0 and at most 60 seconds")
        elif flag == "-m":
            text = value
        elif flag == "-b":
            permanent = True
        elif flag == "-S":
            standalone = True
        elif flag == "-v":
            verbose = True
    if not rest:
        raise GateUsageError("no program to run after the delay (such as rblsmtpd or qmail-smtpd)")
    policy = DelayPolicy(
        delays=delays,
        rules=DynamicRules.from_texts(patterns or None),
        permanent=permanent,
        reject_text=DEFAULT_REJECT_TEXT if text is None else text,
    )
    return ChainOptions(policy, tuple(rest), standalone, verbose, dns_timeout)


def read_client(env: Mapping[str, str]) -> ChainClient:
    """The client from tcpserver's variables (``PROTO`` picks TCP or TCP6 names; IPv4-mapped
    IPv6 addresses become IPv4). ``MissingRemoteIp`` when there is no usable address."""
    proto = env.get("PROTO", "TCP")
    names = [f"{proto}REMOTEIP", "TCPREMOTEIP", "TCP6REMOTEIP"]
    raw = next((env[name] for name in names if env.get(name)), None)
    if raw is None:
        raise MissingRemoteIp("TCPREMOTEIP is not set: run smtp-delay under tcpserver (or set TCPREMOTEIP)")
    ip = normalise_ip(raw)
    host_names = [f"{proto}REMOTEHOST", "TCPREMOTEHOST", "TCP6REMOTEHOST"]
    host = next((env[name] for name in host_names if env.get(name)), None)
    skip = None
    if "RELAYCLIENT" in env:
        skip = "relayclient"
    elif "RBLSMTPD" in env:
        skip = "rblsmtpd"
    return ChainClient(ip, host, skip)


def normalise_ip(raw: str) -> str:
    """Canonical text of an address; IPv4-mapped IPv6 becomes IPv4. ``MissingRemoteIp`` for junk."""
    try:
        address = ipaddress.ip_address(raw.strip().split("%", 1)[0])
    except ValueError:
        raise MissingRemoteIp(f"TCPREMOTEIP {raw!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)
