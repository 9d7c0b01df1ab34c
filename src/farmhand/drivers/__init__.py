"""Drivers: the only code that touches a host (DESIGN.md rule 4).

Drivers are looked up by the ``driver`` name a host has in the farm file and imported lazily,
so a farm of local nodes never imports asyncssh.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from farmhand.drivers.base import Driver
from farmhand.spec.models import HostSpec

REGISTRY = {
    "local": "farmhand.drivers.local:LocalDriver",
    "ssh": "farmhand.drivers.ssh:SshDriver",
    "fake": "farmhand.drivers.fake:FakeDriver",
}


def make_driver(name: str, spec: HostSpec, state_dir: Path, farm_id: str) -> Driver:
    """The driver for host ``name``; every driver takes the same four arguments."""
    module_name, class_name = REGISTRY[spec.driver].split(":")
    driver_class = getattr(importlib.import_module(module_name), class_name)
    driver: Driver = driver_class(name, spec, state_dir, farm_id)
    return driver
