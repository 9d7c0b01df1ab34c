"""How each metric in ``farmhand.registry.METRICS`` is read from one role's sample.

The sampler (``controller/metrics.py``) does the I/O once per sample for the whole farm (one
call per host, one stats request per data plane) and hands every role a ``RoleSample``; a
reader here only picks its figure out of it. Keeping readers pure and one per metric is what
makes a new metric one function plus one registry line, with nothing to change in the
sampler or the policies.

A reader answers ``(value, nodes)``: the role-level value and how many serving nodes it was
measured over (the policies turn a ``total`` into "per node" with it), or None when the sample
has nothing to say, which the policies read as "no opinion", never as zero.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from farmhand.dataplane import PlaneStats
from farmhand.drivers.base import NodeMetrics
from farmhand.registry import METRICS, split_entry

Reading = tuple[float, int] | None


@dataclass(frozen=True)
class RoleSample:
    """One role's share of a sample."""

    serving: int
    """Nodes of the role that are running (measured or not)."""
    nodes: Sequence[NodeMetrics]
    """Per-node figures of the nodes that were measured."""
    host_loads: Sequence[float]
    """The 1-minute load of each host that runs the role and answered."""
    plane: PlaneStats | None
    """The role's data plane's stats, when it has one that answered."""
    request_rate: float | None
    """Requests arriving per second since the previous sample (computed by the sampler, which
    keeps the counters between samples)."""


Reader = Callable[[RoleSample], Reading]


@cache
def reader(name: str) -> Reader:
    """The reader the registry names for metric ``name`` (imported once)."""
    module_name, function = split_entry(METRICS[name].reader)
    found: Reader = getattr(importlib.import_module(module_name), function)
    return found


def read_all(sample: RoleSample) -> dict[str, tuple[float, int]]:
    """Every registered metric the sample can answer."""
    values: dict[str, tuple[float, int]] = {}
    for name in METRICS:
        reading = reader(name)(sample)
        if reading is not None:
            values[name] = reading
    return values


def _mean(values: Sequence[float]) -> Reading:
    return (sum(values) / len(values), len(values)) if values else None


def cpu(sample: RoleSample) -> Reading:
    return _mean([m.cpu_percent for m in sample.nodes])


def rss_mb(sample: RoleSample) -> Reading:
    return _mean([m.rss_bytes / 1e6 for m in sample.nodes])


def connections(sample: RoleSample) -> Reading:
    """Only nodes whose driver counted them (it may skip them while no policy reads them)."""
    return _mean([float(m.connections) for m in sample.nodes if m.connections is not None])


def load1(sample: RoleSample) -> Reading:
    loads = _mean(sample.host_loads)
    return (loads[0], sample.serving) if loads is not None else None


def _from_plane(value: float | None, sample: RoleSample) -> Reading:
    return (value, sample.serving) if value is not None and sample.plane is not None else None


def requests_per_s(sample: RoleSample) -> Reading:
    return _from_plane(sample.request_rate, sample)


def active_connections(sample: RoleSample) -> Reading:
    return _from_plane(sample.plane.active_connections if sample.plane else None, sample)


def p95_ms(sample: RoleSample) -> Reading:
    return _from_plane(sample.plane.p95_ms if sample.plane else None, sample)


def waiting(sample: RoleSample) -> Reading:
    return _from_plane(sample.plane.waiting if sample.plane else None, sample)
