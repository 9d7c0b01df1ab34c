"""The builtin engine: farmhand's own proxy processes, and the controller's handle on them.

A supervisor process (``engine``) holds the listening socket and starts ``workers`` worker
processes that share it; the handle (``dataplane.BuiltinDataPlane``) starts or adopts the
supervisor and talks to it over its control socket. The stats it answers are described in
``farmhand.lb``. The processes are started as ``python -m farmhand.lb.engine`` and
``python -m farmhand.lb.worker``: two entries at ``farmhand.lb``'s top level that only call
``main`` here, so the command lines ``ps`` shows stayed what they were before this package.

Modules, from the handle down:

- ``dataplane``: the controller's handle (``engine = "builtin"`` in ``farmhand.registry.ENGINES``).
- ``engine`` (the supervisor), ``link`` (supervisor <-> worker messages), ``health``
  (re-admitting ejected backends), ``stats`` (one answer from the workers' answers).
- ``worker``, ``context``, ``table``, ``http_proxy`` + ``http_backend``, ``tcp_proxy``: a
  worker process's hot path.
- ``balance``, ``retry``, ``messages``, ``histogram``: pure parts, tested without sockets.

Nothing outside ``farmhand.lb`` imports these modules, and they import nothing of the
HAProxy engine (import-linter contracts in ``pyproject.toml``); what both engines share
(``settings``, ``owner``) sits at ``farmhand.lb``'s top level. This package's own import
stays empty so that a worker process loads only what it runs.
"""
