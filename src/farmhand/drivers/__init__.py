"""Drivers: the only code that touches a host (DESIGN.md rule 4).

Drivers are looked up by the ``driver`` name a host has in the farm file, in
``farmhand.registry.DRIVERS`` (the same table the spec validates names against), and imported
lazily, so a farm of local nodes never imports asyncssh. A new driver is a module here
implementing ``Driver`` plus one line in that table.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from farmhand.drivers.base import Driver
from farmhand.registry import DRIVERS, known, split_entry
from farmhand.spec.models import HostSpec


def driver_class(kind: str) -> type[Driver]:
    """The class registered for ``kind``; a name the spec let through is always there."""
    try:
        entry = DRIVERS[kind]
    except KeyError:
        raise ValueError(f"no driver {kind!r} (known: {known(DRIVERS)})") from None
    module_name, class_name = split_entry(entry)
    found: type[Driver] = getattr(importlib.import_module(module_name), class_name)
    return found


def make_driver(name: str, spec: HostSpec, state_dir: Path, farm_id: str) -> Driver:
    """The driver for host ``name``; every driver takes the same four arguments."""
    return driver_class(spec.driver)(name, spec, state_dir, farm_id)
