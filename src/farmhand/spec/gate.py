"""``gate_options`` of a tcp listener with ``gate = "smtp-delay"``: the SMTP greet delay.

The gate holds each client before the backend's banner for a delay chosen by the client's
reverse DNS, and refuses clients that talk first. The numbers here are the farm file's side
of it; ``farmhand.gate.policy`` holds the same defaults for the ``smtp-delay`` command, which
must not import pydantic (it starts once per connection). A unit test keeps the two equal.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from farmhand.spec.types import Duration

MAX_DELAY = 300.0
"""Delays at or above this are refused: RFC 5321 clients may give up after 5 minutes."""
WARN_DELAY = 30.0
"""Delays above this are allowed but warned about: real clients (swaks 30 s) give up sooner."""
DEFAULT_REJECT_TEXT = "Too early: wait for the greeting before you talk (early talker)"

_NAME_SUFFIX = re.compile(r"^\.?(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?$")
_DELAY_FIELDS = ("static_delay", "dynamic_delay", "mismatch_delay", "no_ptr_delay")


class GateOptions(BaseModel):
    """How the SMTP gate in front of a role treats its clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    static_delay: Duration = 2.0
    """Confirmed name that does not look dynamic: just long enough to see who talks first."""
    dynamic_delay: Duration = 8.0
    """Confirmed name that looks like an end-user address (dsl, pool, cable, IP in the name)."""
    mismatch_delay: Duration = 12.0
    """The PTR name does not resolve back to the client, or DNS failed."""
    no_ptr_delay: Duration = 20.0
    """No PTR record at all: the longest wait."""
    dynamic_patterns: tuple[str, ...] | None = None
    """Regexes (searched, case-insensitive) that replace the built-in dynamic-name rules."""
    permanent: bool = False
    """Refuse early talkers with 553 (permanent) instead of 451 (try again later)."""
    reject_text: str = Field(default=DEFAULT_REJECT_TEXT, min_length=1, max_length=400)
    allowlist: tuple[str, ...] = ()
    """CIDRs ("192.0.2.0/24") and name suffixes ("example.com") that skip the delay; names
    count only once they resolve back to the client, since anyone can write any PTR."""
    pass_cache_ttl: Duration = 86400.0
    """A client that waited politely skips the delay for this long (postscreen keeps a day)."""
    pass_cache_size: int = Field(default=100_000, ge=0)
    dns_server: str | None = None
    """"127.0.0.1" or "127.0.0.1:5353" or "[::1]:53"; default: /etc/resolv.conf."""
    dns_timeout: Duration = 5.0
    """Longest wait for the reverse lookup; it counts toward the delay."""
    reject_drain: Duration = 5.0
    """After refusing a client, read and discard its input this long so it gets the reply."""
    metrics_listen: str | None = None
    """"127.0.0.1:9125": also serve Prometheus text there."""
    max_clients: int = Field(default=50_000, ge=1)
    """Connections held or relayed at once; past this the gate answers 421 and closes."""

    @field_validator(*_DELAY_FIELDS)
    @classmethod
    def _delay_in_range(cls, value: float) -> float:
        if value >= MAX_DELAY:
            raise ValueError(
                f"{value:g}s is refused: clients may give up before {MAX_DELAY:g}s "
                f"(keep delays under {WARN_DELAY:g}s)"
            )
        return value

    @field_validator("dynamic_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for pattern in value or ():
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a regular expression ({error})") from error
        return value

    @field_validator("allowlist")
    @classmethod
    def _allowlist_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not _is_network(entry) and not _NAME_SUFFIX.match(entry.lower()):
                raise ValueError(
                    f'{entry!r} is neither a CIDR ("192.0.2.0/24") nor a name suffix ("example.com")'
                )
        return value

    @field_validator("dns_server")
    @classmethod
    def _dns_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value, default_port=53)
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value, default_port=None)
        return value

    @model_validator(mode="after")
    def _drain_bounded(self) -> GateOptions:
        if self.reject_drain > 60:
            raise ValueError("reject_drain over 60s keeps refused clients around for nothing")
        return self

    def warnings(self) -> list[str]:
        """Allowed but unwise settings, for the operator to read."""
        return [
            f"{name} = {getattr(self, name):g}s is over {WARN_DELAY:g}s: some clients give up before that"
            for name in _DELAY_FIELDS
            if getattr(self, name) > WARN_DELAY
        ]


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def split_address(value: str, default_port: int | None) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address -> (host, port).

    Without ``default_port`` the port must be written.
    """
    text = value.strip()
    bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?", text)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
    elif text.count(":") > 1:
        host, port = text, None
    else:
        host, _, port = text.partition(":")
        port = port or None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'"{value}" is not an address (use "127.0.0.1", "127.0.0.1:53" or "[::1]:53")') from None
    if port is None and default_port is not None:
        return host, default_port
    if port is None or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'"{value}" needs a port from 0 to 65535 (use "127.0.0.1:9125" or "[::1]:9125")')
    return host, int(port)
