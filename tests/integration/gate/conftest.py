"""Fixtures of the gate's integration tests; they live in ``gate_fixtures`` under a name of
their own, so test modules import helpers from it without clashing with other conftests."""

from gate_fixtures import dns_server, sink_dir, start_chain

__all__ = ["dns_server", "sink_dir", "start_chain"]
