"""The gate's counters as Prometheus text, on an optional port of its own.

A custom collector reads ``Gate.snapshot()`` at scrape time, so the hot path bumps plain
integers and never touches prometheus-client. The endpoint is a few lines of asyncio rather
than prometheus-client's threaded server: one loop per process, no threads (DESIGN.md rule 5).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from farmhand.gate.server import Gate

_COUNTER_HELP = {
    "seen": "Clients whose class was known",
    "passed": "Clients that waited politely and were relayed to a backend",
    "early_talkers": "Clients refused for talking before the greeting",
    "hung_up": "Clients that closed the connection during their delay",
}


class GateCollector(Collector):
    """Prometheus families for one gate, labelled by role (and class, backend)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        snapshot = self.gate.snapshot()
        role = str(snapshot["role"])
        for counter, help_text in _COUNTER_HELP.items():
            family = CounterMetricFamily(f"farmhand_gate_{counter}", help_text, labels=["role", "class"])
            for klass, counters in snapshot["classes"].items():
                family.add_metric([role, klass], counters[counter])
            yield family
        for name, help_text in (
            ("accepted", "Connections accepted"),
            ("over_capacity", "Connections refused because max_clients were in the gate"),
            ("no_backend", "Polite clients told 421 because no backend answered"),
            ("connect_failures", "Backend connection attempts that failed"),
            ("lookups", "Reverse DNS lookups made"),
        ):
            family = CounterMetricFamily(f"farmhand_gate_{name}", help_text, labels=["role"])
            family.add_metric([role], snapshot[name])
            yield family
        for name, help_text in (
            ("held", "Clients in their delay now"),
            ("relaying", "Clients relayed to a backend now"),
        ):
            gauge = GaugeMetricFamily(f"farmhand_gate_{name}", help_text, labels=["role"])
            gauge.add_metric([role], snapshot[name])
            yield gauge
        active = GaugeMetricFamily("farmhand_gate_backend_active", "Connections in flight per backend",
                                   labels=["role", "backend"])
        for backend, info in snapshot["backends"].items():
            active.add_metric([role, backend], info["active"])
        yield active


def registry_for(gate: Gate) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GateCollector(gate))
    return registry


async def serve_metrics(gate: Gate, host: str, port: int) -> asyncio.Server:
    """Answer every HTTP GET with the gate's metrics (``/metrics`` or any path)."""
    registry = registry_for(gate)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
            if request.startswith(b"GET "):
                body = generate_latest(registry)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
            else:
                body = b"only GET\n"
                head = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(on_client, host, port)
