"""The one home of pluggable names (DESIGN.md rule 7): a name the farm file may use, mapped
to the ``"module:Class"`` that implements it.

The tables hold plain strings, so this module sits in the bottom layer and imports nothing:
the spec reads the names from here to validate a farm file (a name ``check`` accepts is a
name that exists), and the layer that owns the kind imports the class lazily when a farm
uses it (a farm of local nodes never imports asyncssh). A unit test imports every entry and
checks it is the right kind of class.

Adding a driver: a module under ``farmhand/drivers/`` implementing ``Driver``, plus one line
in ``DRIVERS``.

Adding a load-balancer engine: one module, ``farmhand/lb/NAME/dataplane.py``, with a class
implementing ``farmhand.dataplane.DataPlane`` that is built as ``Class(settings, run_dir)``
(``farmhand.lb.settings.EngineSettings`` and the engine's own folder; see
``farmhand.lb.make_data_plane``) and whose stats answer the format documented in
``farmhand.lb``, plus one line in ``ENGINES``. Whatever else the engine needs lives beside
that module in ``farmhand/lb/NAME/`` (its ``__init__.py`` may be empty); list the package in
the engines' import-linter contracts (``pyproject.toml``) so it stays to itself.

Metrics get their own table here in the same shape when they move over.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DRIVERS: Mapping[str, str] = MappingProxyType({
    "local": "farmhand.drivers.local:LocalDriver",
    "ssh": "farmhand.drivers.ssh:SshDriver",
    "fake": "farmhand.drivers.fake:FakeDriver",
})
"""Host drivers (``driver = "..."`` in a ``[hosts.NAME]`` table); see ``farmhand.drivers``."""

ENGINES: Mapping[str, str] = MappingProxyType({
    "builtin": "farmhand.lb.builtin.dataplane:BuiltinDataPlane",
    "haproxy": "farmhand.lb.haproxy.dataplane:HaproxyDataPlane",
})
"""Load-balancer engines (``engine = "..."`` in a ``[roles.NAME.lb]`` table); see ``farmhand.lb``."""


def split_entry(entry: str) -> tuple[str, str]:
    """``"package.module:Class"`` -> ``("package.module", "Class")``."""
    module_name, _, attribute = entry.partition(":")
    return module_name, attribute


def known(table: Mapping[str, str]) -> str:
    """The names of a table as a user reads them in an error: ``fake, local, ssh``."""
    return ", ".join(sorted(table))
