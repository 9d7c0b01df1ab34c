"""What one gate process runs with: the listener, its role and the farm file's options.

The controller writes this as JSON into the farm's state folder and starts the gate with its
path; the gate validates it again (through ``GateOptions``), so a gate never runs on options
the spec would refuse. ``GateSettings`` is the runtime form: compiled rules, parsed addresses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand.errors import GateError
from farmhand.gate.admission import Allowlist
from farmhand.gate.policy import DelayPolicy
from farmhand.gate.rdns import DynamicRules
from farmhand.spec.gate import GateOptions, split_address
from farmhand.spec.models import LbSpec, split_host_port
from farmhand.spec.types import duration_text


@dataclass(frozen=True)
class GateConfig:
    """The file the controller hands a gate process."""

    role: str
    listen: str
    state_dir: str
    connect_timeout: float
    drain_timeout: float
    options: GateOptions

    @classmethod
    def for_role(cls, role: str, lb: LbSpec, state_dir: Path) -> GateConfig:
        return cls(role, lb.listen, str(state_dir), lb.connect_timeout, lb.drain_timeout, lb.gate_options)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "listen": self.listen,
            "state_dir": self.state_dir,
            "connect_timeout": duration_text(self.connect_timeout),
            "drain_timeout": duration_text(self.drain_timeout),
            "options": self.options.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateConfig:
        from pydantic import ValidationError

        from farmhand.units import parse_duration

        try:
            options = GateOptions.model_validate(data.get("options", {}))
            return cls(
                role=str(data["role"]),
                listen=str(data["listen"]),
                state_dir=str(data["state_dir"]),
                connect_timeout=parse_duration(str(data["connect_timeout"])),
                drain_timeout=parse_duration(str(data["drain_timeout"])),
                options=options,
            )
        except (KeyError, ValueError, ValidationError) as error:
            raise GateError(f"gate configuration is not usable: {error}") from error

    @classmethod
    def read(cls, path: Path) -> GateConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise GateError(f"cannot read the gate configuration {path}: {error}") from error
        return cls.from_json(data)

    def options_hash(self) -> str:
        """Identifies the options a running gate has, so an adopting controller can tell
        whether to send new ones."""
        material = json.dumps(self.options.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class GateSettings:
    """Options compiled for the hot path."""

    policy: DelayPolicy
    allowlist: Allowlist
    dns_servers: list[tuple[str, int]] | None
    dns_timeout: float
    reject_drain: float
    pass_cache_ttl: float
    pass_cache_size: int
    max_clients: int

    @classmethod
    def from_options(cls, options: GateOptions) -> GateSettings:
        policy = DelayPolicy(
            delays={
                "static": options.static_delay,
                "dynamic": options.dynamic_delay,
                "mismatch": options.mismatch_delay,
                "no_ptr": options.no_ptr_delay,
            },
            rules=DynamicRules.from_texts(options.dynamic_patterns),
            permanent=options.permanent,
            reject_text=options.reject_text,
        )
        servers = [split_address(options.dns_server, default_port=53)] if options.dns_server else None
        return cls(
            policy=policy,
            allowlist=Allowlist.parse(options.allowlist),
            dns_servers=servers,
            dns_timeout=options.dns_timeout,
            reject_drain=options.reject_drain,
            pass_cache_ttl=options.pass_cache_ttl,
            pass_cache_size=options.pass_cache_size,
            max_clients=options.max_clients,
        )


def listen_address(listen: str) -> tuple[str, int]:
    """The listener's (host, port); ``GateError`` for a malformed one."""
    try:
        return split_host_port(listen)
    except ValueError as error:
        raise GateError(f"gate listen address: {error}") from error
