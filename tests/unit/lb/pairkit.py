"""What the unit tests of load-balancer pairs share: the farm text of a pair on two SSH hosts
(lb1, lb2) behind 10.213.0.100, and a pair's data plane built from it. Building the plane
connects to nothing, so these tests need no host."""

from __future__ import annotations

from pathlib import Path

from farmhand.lb.pair import PairDataPlane
from farmhand.spec import parse_farm

MEMBER_HOSTS = """\
[hosts.lb1]
driver = "ssh"
address = "10.213.0.11"
known_hosts = "/k"
[hosts.lb2]
driver = "ssh"
address = "10.213.0.12"
known_hosts = "/k"
"""


def pair_farm(*, role: str = "web", command: str = "app {port}", listen: str = "10.213.0.100:8080",
              before_members: str = "", after: str = "") -> str:
    """MEMBER_HOSTS and one role whose lb table names both as a pair. ``before_members``: more
    keys of the lb table, written before ``hosts``/``vip`` (each line ending in a newline);
    ``after``: text after the lb table's members (more keys of it, or tables that follow)."""
    return MEMBER_HOSTS + (
        f"[roles.{role}]\n"
        f'command = "{command}"\n'
        f"[roles.{role}.lb]\n"
        f'listen = "{listen}"\n'
        f"{before_members}"
        'hosts = ["lb1", "lb2"]\n'
        'vip = "10.213.0.100/24"\n'
        f"{after}"
    )


def pair_plane(text: str, state_dir: Path, role: str = "web") -> PairDataPlane:
    """The pair of ROLE in the farm TEXT, its state in STATE_DIR."""
    lb = parse_farm(text).roles[role].lb
    assert lb is not None
    return PairDataPlane(role, lb, None, state_dir)
