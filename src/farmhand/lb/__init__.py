"""Load balancers in front of roles: the builtin engine and HAProxy, behind one contract.

``make_data_plane(role, lb, health, state_dir)`` returns the controller's handle
(``farmhand.dataplane.DataPlane``) for one role; engine processes keep their files in
``state_dir / "lb" / role`` and outlive the controller.

Where things live (an engine is a package here plus its line in ``farmhand.registry.ENGINES``):

- this package's top level is what the controller holds: ``make_data_plane`` (the handle for
  a role, by its engine's name in the registry), ``settings`` (spec -> the plain settings
  every engine reads) and ``owner`` (one balancer per address, and naming who holds a taken
  one);
- ``builtin/``: the builtin engine: its handle (``builtin.dataplane``), the supervisor
  process, the workers' hot path and their pure parts (its docstring lists them);
- ``haproxy/``: the HAProxy engine: its handle (``haproxy.dataplane``) and its pure config
  and stats parsing (``haproxy.config``).
- ``pair``, ``placed``, ``keepalived_config``, ``pair_watch``, ``member_call``: load-balancer
  pairs (``hosts`` and ``vip`` in the lb table): the handle that fans out to every member, one
  member on its SSH host (engine, watcher, keepalived), keepalived's generated files, the
  watcher that runs beside keepalived on the host, and the one-call runner that runs an
  engine's own handle there (HAProxy's: its files and runtime API are local to the host).
- ``engine`` and ``worker``: only the command-line names of the builtin engine's processes
  (``python -m farmhand.lb.engine``, ``python -m farmhand.lb.worker``), which ``ps`` shows
  and ``owner`` recognises; they call ``main`` in ``builtin/``.

The two engines import nothing of each other, and nothing outside ``farmhand.lb`` imports
either of them (import-linter contracts in ``pyproject.toml``): the rest of farmhand sees a
balancer only as a ``DataPlane`` and its stats below.

Only one balancer listens on an address: a second one (another farm, another folder, either
engine) fails to start with "cannot listen on ADDR: address in use by the builtin load
balancer of role 'web' (files in DIR, pid N)"; the builtin engine's workers share the port
among themselves only.

``stats()`` answers, for both engines::

    {
      "engine": str,                # its name in farmhand.registry.ENGINES: "builtin" | "haproxy"
      "role": str, "mode": "http" | "tcp",
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
      # the engine's own health (builtin; HAProxy answers 0 and []):
      "worker_restarts": int,       # workers that died and were started again; only grows
                                    #   while the engine lives (Prometheus:
                                    #   farmhand_lb_worker_restarts_total)
      "worker_deaths": [            # the last 10 deaths, oldest first
        {"worker": int,             # the worker's slot (0 .. workers-1)
         "pid": int,                # the process that died
         "exit_status": int | None, # its exit status, or None when a signal killed it
         "signal": int | None,      # the signal that killed it (9 for kill -9), else None
         "how": str,                # "was killed by signal 9" / "exited with status 1"
         "connections": int | None, # client connections it held at the last stats request
                                    #   (None if stats were never asked of it)
         "lived_s": float,          # seconds it had run
         "at": float},              # when the supervisor saw it die (Unix time)
      ],
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
``buckets_ms`` is empty.

Counters only grow while an engine lives (they restart from zero with a new engine
process): a builtin worker that dies has its last reported counters kept by the
supervisor, so role and backend totals do not go backwards; what it counted after the last
stats request is lost with it. To tell users about a worker's death, the controller reads
``worker_restarts`` (a new value means new deaths) and emits one event per entry of
``worker_deaths`` it has not seen (an entry is identified by ``pid`` and ``at``), e.g.
"worker 1 of the load balancer (pid 1234) was killed by signal 9 holding 12 connections;
restarted".

The limit of ``kill -9`` on one builtin worker (issue 10 #17): the requests in flight on
it are lost. Their client connections were that process's own sockets, so the kernel
closes them when it dies, and a client sees its connection closed without an answer; a
proxy cannot retry a request it no longer holds, so only a client that resends (browsers
and most HTTP clients do for idempotent requests on a reused connection) recovers it. The
listening socket survives (the supervisor keeps it open), so connections that arrive
meanwhile wait in its queue, and the supervisor starts a new worker at once (with a
growing delay only if workers keep dying young); the other workers serve on throughout.
Planned stops never lose requests: workers finish what is in flight first.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farmhand.registry import ENGINES, known, split_entry

if TYPE_CHECKING:
    from collections.abc import Callable

    from farmhand.dataplane import DataPlane
    from farmhand.spec.models import HealthSpec, LbSpec


def make_data_plane(role: str, lb: LbSpec, health: HealthSpec | None, state_dir: Path,
                    gate: dict[str, Any] | None = None) -> DataPlane:
    """The handle for ``role``'s load balancer: the class ``farmhand.registry.ENGINES`` names
    for ``lb.engine``, imported only now (a farm of builtin balancers never imports the
    HAProxy handle) and built as ``Class(settings, run_dir)``, as every engine is. ``gate``
    (a pair only): the SMTP gate's member configuration (``farmhand.gate.dataplane.member_config``,
    made by the controller, which sees both packages) to run on the members instead of an engine."""
    from farmhand.lb.settings import EngineSettings

    if lb.is_pair:  # the same engine (or the SMTP gate) on named hosts behind a floating address (lb/pair.py)
        from farmhand.lb.pair import PairDataPlane

        return PairDataPlane(role, lb, health, state_dir, gate=gate)
    tls = None
    if lb.tls is not None:
        from farmhand.lb.tls import settings_for

        tls = settings_for(role, lb.tls, state_dir)
    settings = EngineSettings.from_spec(role, lb, health, tls)
    try:
        entry = ENGINES[settings.engine]
    except KeyError:
        raise ValueError(f"no load-balancer engine {settings.engine!r} (known: {known(ENGINES)})") from None
    from farmhand.control_channel import runtime_dir

    run_dir = runtime_dir(state_dir, f"lb/{role}", "admin.sock")
    module_name, class_name = split_entry(entry)
    engine: Callable[[EngineSettings, Path], DataPlane] = getattr(importlib.import_module(module_name), class_name)
    return engine(settings, run_dir)


__all__ = ["make_data_plane"]
