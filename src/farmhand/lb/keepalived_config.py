"""keepalived's configuration and helper scripts for one member of a load-balancer pair, as
pure string builders (tested without a host), plus the parser of the state file its notify
script writes.

Why these settings (FIELD-NOTES.md: takeover is about 3 x the advert interval plus skew):

- ``vrrp_version 3`` and ``advert_int 0.1``: sub-second adverts need VRRPv3 (v2 counts whole
  seconds); the backups declare the master dead after ~0.3 s of silence.
- every instance ``state BACKUP`` with ``nopreempt``: whoever holds the address keeps it; a
  host or balancer that comes back never takes it back (no second move, no flapping).
  Priorities fall with the order of ``hosts`` so the first listed wins a cold start.
- the instance tracks its interface (keepalived's default): a host whose link dies goes to
  FAULT and drops the address at once, so when the link returns it comes back as a backup
  instead of fighting the new master with the same address (split brain ending in a flap).
- ``track_script``: a check that fails when the local balancer does not accept a connection
  puts the instance in FAULT, so a dead balancer hands the address over; when the controller
  has started it again the instance returns as a backup (nopreempt keeps it there).
- gratuitous ARP at once on takeover, repeated, so clients and routers learn the new MAC.
- a ``notify`` script appends ``<unix time> <STATE>`` to a state file the controller reads
  over the host's connection: which member holds the address, and every move with its time.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

STATES = ("MASTER", "BACKUP", "FAULT", "STOP")
BASE_PRIORITY = 150
PRIORITY_STEP = 10


@dataclass(frozen=True)
class MemberConfig:
    """What one member's keepalived needs; paths are on that member's host."""

    role: str
    host: str
    index: int
    """Position in the pair's ``hosts`` (0 = first listed: highest priority)."""
    vip: str
    """The address with its prefix length: "10.213.0.100/24"."""
    interface: str
    vrrp_id: int
    check_port: int
    check_script: str
    notify_script: str
    state_file: str
    advert_int: float = 0.1
    preempt: bool = False
    track_file: str = ""
    """Written by the member's watcher (``farmhand.lb.pair_watch``): "0" while the balancer
    runs, "1" from the instant it dies; keepalived reads it by inotify, so a killed balancer
    hands the address over within an advert or two instead of at the next check."""
    check_interval: int = 1
    """keepalived runs scripts at most once a second: the check is the backstop for a balancer
    that hangs; the track file is the fast path for one that dies."""
    check_timeout: int = 1

    @property
    def priority(self) -> int:
        return max(1, BASE_PRIORITY - PRIORITY_STEP * self.index)

    @property
    def instance(self) -> str:
        return f"farmhand_{self.role}".replace("-", "_")


def _seconds(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def keepalived_conf(member: MemberConfig) -> str:
    """The whole keepalived.conf of one member."""
    ipaddress.ip_interface(member.vip)  # ValueError on a bad address: refused before any host is touched
    preempt = "" if member.preempt else "    nopreempt\n"
    return (
        "# written by farmhand: changes are overwritten\n"
        "global_defs {\n"
        f"    router_id farmhand_{member.role}_{member.host}\n"
        "    vrrp_version 3\n"
        "    script_user root\n"
        "    vrrp_garp_master_delay 1\n"
        "    vrrp_garp_master_repeat 3\n"
        "    vrrp_garp_lower_prio_repeat 1\n"
        "}\n"
        f"{_track_file(member)}"
        "vrrp_script farmhand_balancer {\n"
        f"    script {_quote(member.check_script)}\n"
        f"    interval {int(member.check_interval)}\n"
        f"    timeout {int(member.check_timeout)}\n"
        "    fall 1\n"
        "    rise 1\n"
        "}\n"
        f"vrrp_instance {member.instance} {{\n"
        "    state BACKUP\n"
        f"{preempt}"
        f"    interface {member.interface}\n"
        f"    virtual_router_id {member.vrrp_id}\n"
        f"    priority {member.priority}\n"
        f"    advert_int {_seconds(member.advert_int)}\n"
        "    virtual_ipaddress {\n"
        f"        {member.vip} dev {member.interface}\n"
        "    }\n"
        "    track_script {\n"
        "        farmhand_balancer\n"
        "    }\n"
        f"{_track_file_use(member)}"
        f"    notify {_quote(member.notify_script)}\n"
        "}\n"
    )


def _track_file(member: MemberConfig) -> str:
    if not member.track_file:
        return ""
    return (
        "track_file farmhand_balancer_alive {\n"
        f"    file {_quote(member.track_file)}\n"
        "    weight 0\n"
        "    init_file 1\n"
        "}\n"
    )


def _track_file_use(member: MemberConfig) -> str:
    if not member.track_file:
        return ""
    return "    track_file {\n        farmhand_balancer_alive weight 0\n    }\n"


def _quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise ValueError(f"{path!r} cannot go into keepalived.conf")
    return f'"{path}"'


def check_script(port: int) -> str:
    """Exit 0 when something accepts a TCP connection on 127.0.0.1:PORT (the member's
    balancer binds the wildcard address), else 1. bash's /dev/tcp: a few ms, no Python."""
    return (
        "#!/bin/bash\n"
        "# written by farmhand: the local load balancer accepts connections\n"
        f"exec 3<>/dev/tcp/127.0.0.1/{int(port)}\n"
    )


def check_pid_script(pidfile: str) -> str:
    """Exit 0 while the process named in ``pidfile`` lives, else 1: the SMTP gate's check. A
    connection to its port would be a client it holds in its greet delay and counts; the
    watcher pings its control socket, which sees a hung gate too."""
    q = shlex.quote(pidfile)
    return (
        "#!/bin/sh\n"
        "# written by farmhand: the local SMTP gate runs\n"
        f'pid=$(head -n1 {q} 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null\n'
    )


def notify_script(state_file: str) -> str:
    """keepalived calls it as ``notify TYPE NAME STATE PRIORITY``; it appends one line."""
    return (
        "#!/bin/sh\n"
        "# written by farmhand: records each VRRP transition for the controller\n"
        f'echo "$(date +%s.%N) $3" >> {shlex.quote(state_file)}\n'
    )


@dataclass(frozen=True)
class Transition:
    at: float
    state: str


def parse_states(text: str) -> list[Transition]:
    """The state file's lines, oldest first; lines that are not ``<time> <STATE>`` are skipped
    (a line being written while read, an older format)."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[1] not in STATES:
            continue
        try:
            found.append(Transition(float(parts[0]), parts[1]))
        except ValueError:
            continue
    return found
