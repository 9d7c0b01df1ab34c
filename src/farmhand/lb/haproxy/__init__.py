"""The HAProxy engine: Debian's haproxy run for one role, and the controller's handle on it.

- ``dataplane``: the controller's handle (``engine = "haproxy"`` in ``farmhand.registry.ENGINES``):
  starts or adopts HAProxy, steers it through its runtime API, reads its stats.
- ``config``: pure builders and parsers (``haproxy.cfg``, runtime commands, ``show stat`` rows
  as farmhand's COUNTERS), tested with no HAProxy.

Nothing outside ``farmhand.lb`` imports these modules, and they import nothing of the
builtin engine (import-linter contracts in ``pyproject.toml``); what both engines share
(``settings``, ``owner``) sits at ``farmhand.lb``'s top level.
"""
