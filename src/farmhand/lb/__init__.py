"""Load balancers in front of roles: the builtin engine and HAProxy, behind one contract.

``make_data_plane(role, lb, health, state_dir)`` returns the controller's handle
(``farmhand.dataplane.DataPlane``) for one role; engine processes keep their files in
``state_dir / "lb" / role`` and outlive the controller.

Modules: ``settings`` (spec -> plain settings), ``balance`` / ``retry`` / ``messages`` /
``histogram`` (pure parts), ``table`` / ``context`` / ``http_proxy`` + ``http_backend`` / ``tcp_proxy`` /
``worker`` (a worker process's hot path), ``link`` / ``health`` / ``stats`` / ``engine``
(the supervisor), ``builtin`` (its handle), ``haproxy_config`` / ``haproxy`` (the HAProxy
engine).

``stats()`` answers, for both engines::

    {
      "engine": "builtin" | "haproxy", "role": str, "mode": "http" | "tcp",
      "listen": "127.0.0.1:8080", "workers": int,
      # role level, for autoscaling:
      "requests_per_s": float,      # over the last ~10 s (tcp: connections/s)
      "active_connections": int,    # client connections open now
      "p95_ms": float | None,       # latency p95 over the last ~10 s (haproxy: average, see below)
      "waiting": int,               # requests (tcp: connections) waiting for a usable backend
      "listeners": {LISTEN: COUNTERS},
      "backends": {NAME: COUNTERS | {"host", "port", "weight",
                                     "state": "ready" | "drain" | "removed",
                                     "ejected": bool}},
    }

    COUNTERS = {
      "connections": int,   # listener: client connections accepted; backend: connections opened
      "requests": int,      # http: requests answered; tcp: connections that got a first byte
      "bytes_in": int,      # towards the backends (request bytes)
      "bytes_out": int,     # towards the clients (response bytes)
      "errors": int,        # listener: requests answered with an error (4xx/5xx by the proxy,
                            #   tcp: connections given up); backend: failed attempts
      "retries": int,       # attempts moved to another backend (on the backend that failed)
      "active": int,        # listener: open client connections; backend: http requests (tcp:
                            #   connections) in flight now
      "latency": {"count": int, "p50_ms", "p95_ms", "p99_ms": float | None,
                  "buckets_ms": [[upper_bound_ms, count], ...]},
    }

Latency is request start to response end (http) or accept to the backend's first byte
(tcp). HAProxy keeps no histogram: its ``latency`` has ``count`` and the average over its
last 1024 requests (``avg_ms``) in the p50/p95/p99 places and ``"approx": true``;
``buckets_ms`` is empty. Counters of the builtin engine restart from zero for a worker
that was restarted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farmhand.dataplane import DataPlane
    from farmhand.spec.models import HealthSpec, LbSpec


def make_data_plane(role: str, lb: LbSpec, health: HealthSpec | None, state_dir: Path) -> DataPlane:
    """The handle for ``role``'s load balancer, by ``lb.engine`` (``builtin`` or ``haproxy``)."""
    from farmhand.lb.settings import EngineSettings

    settings = EngineSettings.from_spec(role, lb, health)
    from farmhand.control_channel import runtime_dir

    run_dir = runtime_dir(state_dir, f"lb/{role}", "admin.sock")
    if settings.engine == "haproxy":
        from farmhand.lb.haproxy import HaproxyDataPlane

        return HaproxyDataPlane(settings, run_dir)
    from farmhand.lb.builtin import BuiltinDataPlane

    return BuiltinDataPlane(settings, run_dir)


__all__ = ["make_data_plane"]
