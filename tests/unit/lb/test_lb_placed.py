"""Pure parts of a pair member's handle (lb/placed.py)."""

from __future__ import annotations

from farmhand.lb.placed import interface_from_routes


def test_the_most_specific_route_names_the_interface() -> None:
    lines = ["default via 10.0.0.1 dev ens3 proto dhcp", "10.213.1.0/24 dev eth0 proto kernel scope link src 10.213.1.11"]
    assert interface_from_routes(lines) == "eth0"
    assert interface_from_routes(lines[:1]) == "ens3"
    assert interface_from_routes([]) is None
    assert interface_from_routes(["unreachable 10.0.0.0/8"]) is None
