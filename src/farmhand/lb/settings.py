"""Plain, JSON-shaped settings of one role's load balancer, shared by every engine.

Why not pass ``LbSpec`` around: engine processes are started by file (``engine.json``) and
must not import pydantic or the farm-file loader just to learn a timeout; the handle turns
the spec into these records once, and the engine reads them back with ``from_json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from farmhand.spec.models import HealthSpec, LbSpec

Mode = Literal["http", "tcp"]
Balance = Literal["roundrobin", "leastconn", "source"]

RETRIES = 3
"""Retries after the first attempt (each on another backend), as HAProxy's ``retries 3``."""


@dataclass(frozen=True)
class CheckSettings:
    """The active check an engine runs itself (on ejected backends; HAProxy on all).

    ``exec`` checks run on the node's host and belong to the controller, so the engine
    falls back to a TCP connect for them.
    """

    type: Literal["http", "tcp"] = "tcp"
    path: str = "/"
    status: int = 200
    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 1


@dataclass(frozen=True)
class CertEntry:
    """One certificate an HTTPS listener serves: a PEM file holding its chain and key (kept
    0600 under the farm's state folder by ``farmhand.certs``) and the DNS names it covers,
    read once by the controller so workers need no X.509 parser to choose by SNI."""

    path: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsSettings:
    """An HTTPS listener beside the plain one (``spec.tls.TlsSpec`` made plain)."""

    listen_host: str
    listen_port: int
    certs: tuple[CertEntry, ...] = ()
    """The first is served to clients whose SNI name no certificate covers (or who send none)."""
    redirect_http: bool = False
    hsts_seconds: int | None = None
    version: str = ""
    """A digest of the certificate files' contents: a new one means "load them again", which
    engines do without a restart (``restart_key`` leaves it out)."""

    @property
    def listen(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TlsSettings:
        fields = dict(data)
        fields["certs"] = tuple(CertEntry(path=c["path"], names=tuple(c.get("names", ()))) for c in fields.get("certs", ()))
        return cls(**fields)


@dataclass(frozen=True)
class EngineSettings:
    """Everything an engine needs to serve one role's listener."""

    role: str
    listen_host: str
    listen_port: int
    mode: Mode = "http"
    engine: str = "builtin"
    """A name in ``farmhand.registry.ENGINES`` (the spec accepts no other)."""
    balance: Balance = "roundrobin"
    workers: int = 1
    drain_timeout: float = 30.0
    connect_timeout: float = 2.0
    client_timeout: float = 60.0
    http_request_timeout: float = 10.0
    """Deadline for a whole request head (HAProxy's ``timeout http-request``): a client that
    trickles a head byte by byte is answered 408 when it passes, whatever its idle timer says."""
    server_timeout: float = 30.0
    max_request_bytes: int = 16 << 20
    max_response_bytes: int = 256 << 20
    check: CheckSettings = CheckSettings()
    tls: TlsSettings | None = None

    @property
    def listen(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def where(self) -> str:
        """How error messages name this load balancer."""
        return f"load balancer of role {self.role!r} on {self.listen}"

    def restart_key(self) -> tuple[object, ...]:
        """Settings that only a new engine process can change (the rest apply live)."""
        key = (self.listen_host, self.listen_port, self.mode, self.workers, self.engine)
        return key if self.tls is None else (*key, self.tls.listen)  # engines without TLS keep their key

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineSettings:
        fields = dict(data)
        fields["check"] = CheckSettings(**fields.get("check", {}))
        if fields.get("tls") is not None:
            fields["tls"] = TlsSettings.from_json(fields["tls"])
        return cls(**fields)

    @classmethod
    def from_spec(cls, role: str, lb: LbSpec, health: HealthSpec | None, tls: TlsSettings | None = None) -> EngineSettings:
        """``tls`` is made by ``farmhand.lb.make_data_plane`` once the certificate files are in place."""
        host, port = lb.host_port
        return cls(
            role=role,
            listen_host=host,
            listen_port=port,
            mode=lb.mode,
            engine=lb.engine,
            balance=lb.balance,
            workers=lb.workers or os.cpu_count() or 1,
            drain_timeout=lb.drain_timeout,
            connect_timeout=lb.connect_timeout,
            client_timeout=lb.client_timeout,
            http_request_timeout=lb.http_request_timeout,
            server_timeout=lb.server_timeout,
            max_request_bytes=lb.max_request_bytes,
            max_response_bytes=lb.max_response_bytes,
            check=check_from_spec(health),
            tls=tls,
        )

    def with_workers(self, workers: int) -> EngineSettings:
        return replace(self, workers=workers)

    def with_tls(self, tls: TlsSettings | None) -> EngineSettings:
        return replace(self, tls=tls)


def check_from_spec(health: HealthSpec | None) -> CheckSettings:
    """The engine's own check for a role: its http check, else a TCP connect."""
    if health is None:
        return CheckSettings()
    kind: Literal["http", "tcp"] = "http" if health.type == "http" else "tcp"
    return CheckSettings(
        type=kind,
        path=health.path,
        status=health.status,
        interval=health.interval,
        timeout=health.timeout,
        rise=health.rise,
    )
