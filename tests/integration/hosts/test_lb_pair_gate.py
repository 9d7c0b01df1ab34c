"""Issue 14 on test hosts: the SMTP gate as a load-balancer pair. The gate runs on h1 and h2
behind a floating address moved by keepalived, the role's SMTP nodes on h3, and a client in
h4's namespace sends mail to the address with swaks:

1. the client is held in the gate's delay, then greeted by a node, and its mail reaches a node;
2. the holder's gate is killed: the other member takes the address, and the next mail goes
   through it; the killed gate is started again where it died, as a backup;
3. ``down`` leaves nothing on the members.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from dnslib import RCODE
from dnslib.server import BaseResolver, DNSServer
from tests.integration.farmkit import Farm, free_port, wait_for
from tests.integration.hosts.pairkit import (
    became_master_after,
    holder_is,
    host_tables,
    member_back,
    member_processes,
    pair_run,
    served_folder,
    vip_of,
    wait_pair,
)
from tests.testhosts import TestHost, TestHostRun

pytestmark = pytest.mark.slow

BACKEND = Path(__file__).with_name("pair_smtp_backend.py")
PORT = 2525


@pytest.fixture(scope="module")
def hosts() -> Iterator[TestHostRun]:
    """h1, h2: the pair (root logins: keepalived moves an address); h3: the nodes; h4: the client."""
    yield from pair_run("keepalived", "swaks", missing="keepalived and swaks are needed (scripts/bootstrap)")


class NoNames(BaseResolver):  # type: ignore[misc]
    """Every name unknown: clients fall in the gate's no-PTR class (a short delay here)."""

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def dns(hosts: TestHostRun) -> Iterator[tuple[str, int]]:
    """A DNS server on the root namespace's bridge address, which the members reach."""
    port = free_port()
    server = DNSServer(NoNames(), address=hosts.gateway, port=port)
    server.start_thread()
    try:
        yield hosts.gateway, port
    finally:
        server.stop()


@pytest.fixture
def folder() -> Iterator[Path]:
    yield from served_folder("fh-pair-gate-", BACKEND, "backend.py")


def gate_farm(run: TestHostRun, app: Path, dns: tuple[str, int]) -> str:
    vip = vip_of(run)
    return host_tables(run) + textwrap.dedent(f"""\
        [farm]
        host_timeout = "4s"

        [roles.web]
        command = "python3 backend.py --port {{port}} --node {{node}} --host {{host}}"
        workdir = "{app}"
        count = 2
        stop_grace = "3s"
        require = {{ nodes = "yes" }}
        health = {{ type = "tcp", interval = "300ms" }}

        [roles.web.lb]
        listen = "{vip}:{PORT}"
        mode = "tcp"
        gate = "smtp-delay"
        hosts = ["h1", "h2"]
        vip = "{vip}/24"
        drain_timeout = "3s"

        [roles.web.lb.gate_options]
        static_delay = "300ms"
        dynamic_delay = "300ms"
        mismatch_delay = "300ms"
        no_ptr_delay = "300ms"
        dns_server = "{dns[0]}:{dns[1]}"
        dns_timeout = "1s"
        pass_cache_ttl = "0s"
        """)


def send_mail(run: TestHostRun, client: TestHost, subject: str) -> subprocess.CompletedProcess[str]:
    """swaks from the client's namespace to the address; its whole transcript."""
    return subprocess.run(
        ["ip", "netns", "exec", client.netns, "swaks", "--server", vip_of(run), "--port", str(PORT),
         "--from", "a@polite.test", "--to", "b@farm.test", "--header", f"Subject: {subject}", "--timeout", "15"],
        capture_output=True, text=True, timeout=60, check=False)


def kill_gate(host: TestHost) -> None:
    """kill -9 the member's gate process."""
    folder = str(host.base_dir / "lb" / "web")
    found = [p for p in psutil.process_iter(["cmdline"])
             if folder in " ".join(p.info["cmdline"] or []) and "farmhand.gate.proxy" in " ".join(p.info["cmdline"] or [])]
    assert found, f"no gate process found on {host.name}"
    for process in found:
        os.kill(process.pid, signal.SIGKILL)


def delivered(farm: Farm, subject: str) -> bool:
    logs = "".join(farm.cli("logs", node["id"]).stdout for node in farm.nodes("web"))
    return f"Subject: {subject}" in logs


def test_the_smtp_gate_runs_as_a_pair(hosts: TestHostRun, make_farm: Callable[..., Farm], folder: Path,
                                      dns: tuple[str, int]) -> None:
    run = hosts
    by_name = {h.name: h for h in run.hosts}
    members = [by_name["h1"], by_name["h2"]]
    farm = make_farm(gate_farm(run, folder, dns))
    farm.up()
    farm.wait_ready("web", 2, timeout=60)
    held = wait_for(lambda: holder_is(farm, lambda h: h in ("h1", "h2")), 30, "a member holding the address")
    active = held["holder"]
    other = "h2" if active == "h1" else "h1"
    wait_pair(farm, lambda: member_back(farm, other), 30, f"{other} as a backup with its gate running", members)

    # 1. through the gate on the address: held, then greeted by a node; the mail reaches one
    sent = send_mail(run, by_name["h4"], "first through the pair")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "<-  220 web-" in sent.stdout and "ESMTP backend" in sent.stdout, sent.stdout
    wait_for(lambda: delivered(farm, "first through the pair"), 20, "the mail in a node's log")

    # 2. the holder's gate dies: the other member answers on the address
    killed_at = time.time()
    kill_gate(by_name[active])
    wait_for(lambda: became_master_after(by_name[other], killed_at), 30, f"{other} taking the address")
    sent = send_mail(run, by_name["h4"], "after the gate died")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for(lambda: delivered(farm, "after the gate died"), 20, "the second mail in a node's log")
    wait_pair(farm, lambda: member_back(farm, active), 60, f"{active}'s gate started again, a backup", members)
    wait_pair(farm, lambda: holder_is(farm, lambda h: h == other), 30, f"the status naming {other} as holder")
    events = farm.events()
    assert any(e["kind"] == "lb.member_restarted" and active in e["message"] for e in events), events[-10:]
    stats = next(r for r in farm.status()["roles"] if r["name"] == "web")["lb_stats"]
    assert "classes" in stats, stats  # the serving member's gate stats, as for a single gate

    # 3. down leaves nothing on the members
    farm.cli("down", "--timeout", "30")
    wait_for(lambda: not member_processes(members), 30, "no gate, watcher or keepalived left on h1 and h2")
