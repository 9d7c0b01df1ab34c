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
        return (self.listen_host, self.listen_port, self.mode, self.workers, self.engine)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineSettings:
        fields = dict(data)
        fields["check"] = CheckSettings(**fields.get("check", {}))
        return cls(**fields)

    @classmethod
    def from_spec(cls, role: str, lb: LbSpec, health: HealthSpec | None) -> EngineSettings:
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
        )

    def with_workers(self, workers: int) -> EngineSettings:
        return replace(self, workers=workers)


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
