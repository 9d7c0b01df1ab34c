"""What the controller's parts share: the spec, the store, the hosts, the data planes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.clock import Clock
from farmhand.controller.events import EventLog
from farmhand.controller.health import HealthMonitor
from farmhand.dataplane import DataPlane
from farmhand.drivers.base import Driver
from farmhand.spec.models import FarmSpec
from farmhand.store.base import Store
from farmhand.store.statedir import StateDir


@dataclass
class HostStatus:
    """What the controller knows of a host beyond the farm file."""

    state: str = "up"             # up | unreachable | down
    since: float = 0.0
    reason: str = ""
    drained: bool = False
    probe: asyncio.Future[Any] | None = None
    """A background listing of a host that is not up (see observe)."""


@dataclass(frozen=True)
class HostState:
    """A host's state as the faces see it (a copy: they cannot change the controller's)."""

    state: str
    since: float
    reason: str
    drained: bool


@dataclass
class FarmContext:
    spec: FarmSpec
    farm_file: Path
    state: StateDir
    store: Store
    clock: Clock
    events: EventLog
    health: HealthMonitor
    drivers: dict[str, Driver] = field(default_factory=dict)
    hosts: dict[str, HostStatus] = field(default_factory=dict)
    data_planes: dict[str, DataPlane] = field(default_factory=dict)
