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

Adding a metric that policies may read: a reader function in
``farmhand/controller/readings.py`` (it gets one role's ``RoleSample`` and answers the value
and how many nodes it was measured over, or None), plus one line in ``METRICS`` saying how the
value aggregates (``kind``), where it comes from (``source``) and how it reads (``unit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

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

MetricKind = Literal["mean", "total", "level"]
"""How a role-level value comes from its nodes, which decides what "per node" means:

``mean``: the average over the role's nodes (CPU %); ``total``: shared by the nodes (requests
per second, a queue's length), so per node is total / nodes; ``level``: a value the nodes
bring down together (p95 latency), compared with the target as it is.
"""


@dataclass(frozen=True)
class MetricInfo:
    kind: MetricKind
    source: Literal["node", "host", "lb", "external"]
    unit: str
    """How a value reads in a reason: "{value}{unit}" ("85% CPU", "210 req/s")."""
    reader: str = ""
    """``"module:function"`` that reads it from a sample (external metrics have none: the
    sampler fetches them as the farm file says)."""


def _reads(name: str) -> str:
    return f"farmhand.controller.readings:{name}"


METRICS: Mapping[str, MetricInfo] = MappingProxyType({
    "cpu": MetricInfo("mean", "node", "% CPU", _reads("cpu")),
    "rss_mb": MetricInfo("mean", "node", " MB RSS", _reads("rss_mb")),
    "connections": MetricInfo("mean", "node", " connections", _reads("connections")),
    "load1": MetricInfo("mean", "host", " load", _reads("load1")),
    "requests_per_s": MetricInfo("total", "lb", " req/s", _reads("requests_per_s")),
    "active_connections": MetricInfo("total", "lb", " active connections", _reads("active_connections")),
    "p95_ms": MetricInfo("level", "lb", " ms p95", _reads("p95_ms")),
    "waiting": MetricInfo("total", "lb", " requests waiting", _reads("waiting")),
})
"""Metrics farmhand measures itself (autoscale policies name them). ``lb`` ones need the role
to have a load balancer; ``node`` ones that a driver may skip are ``OPTIONAL_NODE_METRICS``."""


def split_entry(entry: str) -> tuple[str, str]:
    """``"package.module:Class"`` -> ``("package.module", "Class")``."""
    module_name, _, attribute = entry.partition(":")
    return module_name, attribute


def known(table: Mapping[str, str]) -> str:
    """The names of a table as a user reads them in an error: ``fake, local, ssh``."""
    return ", ".join(sorted(table))
