"""The SMTP gate: delay the banner by the client's reverse DNS, refuse clients that talk first.

Two faces share one set of pure decisions (``rdns``, ``policy``):

- ``smtp_delay``: the ``smtp-delay`` command for ucspi-tcp chains, one process per connection;
- ``proxy`` (with ``hold``, ``relay``, ``server``): one asyncio process that holds thousands of
  clients in their delay and relays the good ones to a role's backends, steered by the
  controller through ``dataplane.GateDataPlane``.

This package's ``__init__`` imports nothing: ``smtp-delay`` starts once per connection, so
it must only load what it uses.
"""
