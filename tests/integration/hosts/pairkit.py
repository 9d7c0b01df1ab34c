"""What the test-host tests of load-balancer pairs share (issue 14): four hosts (h1, h2 the
pair with root logins, since keepalived moves an address; h3 the nodes; h4 the client), the
farm text of their host tables and of an HTTP pair, a looping client in h4's namespace, and
reading the pair's state: from the status (holder, members) and from keepalived's own
transition stamps on each member.

The pair's role is ``web`` in every test; bench/lb_pair_takeover.py reads its roles' stamps
with ``states`` too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.integration.farmkit import Farm, wait_for
from tests.testhosts import ROOT_USER, TestHost, TestHostRun, create_run

PORT = 8080


def vip_of(run: TestHostRun) -> str:
    """The pair's floating address (without its prefix length)."""
    return f"10.213.{run.subnet}.100"


def pair_run(*tools: str, missing: str) -> Iterator[TestHostRun]:
    """The body of a module's ``hosts`` fixture: four test hosts, h1 and h2 with root logins;
    the test is skipped (saying MISSING) when one of TOOLS is not installed."""
    if os.geteuid() != 0:
        pytest.skip("test hosts need root (network namespaces, sshd)")
    if any(shutil.which(tool) is None for tool in tools):
        pytest.skip(missing)
    run = create_run(4, root_login=True)
    try:
        yield run
    finally:
        run.close()


def served_folder(prefix: str, source: Path, name: str) -> Iterator[Path]:
    """The body of a folder fixture: a new folder holding SOURCE as NAME, both readable by
    all (the nodes run as the test user); removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    shutil.copy(source, folder / name)
    (folder / name).chmod(0o644)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def host_tables(run: TestHostRun) -> str:
    """[hosts] tables for h1, h2 (logged in as root) and h3 (labelled for the nodes)."""
    tables = []
    for host in run.hosts[:3]:
        user = ROOT_USER if host.name in ("h1", "h2") else host.user
        fields = host.spec_fields(user=user)
        lines = [f"[hosts.{host.name}]"] + [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in fields.items()]
        if host.name == "h3":
            lines.append('labels = { nodes = "yes" }')
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


def farm_text(run: TestHostRun, app: Path, engine: str) -> str:
    """Role web: two nodes of examples/app.py on h3 behind an HTTP pair of ENGINE on h1, h2."""
    address = vip_of(run)
    return host_tables(run) + textwrap.dedent(f"""\
        [farm]
        host_timeout = "4s"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}} --host {{host}}"
        workdir = "{app}"
        count = 2
        stop_grace = "3s"
        require = {{ nodes = "yes" }}

        [roles.web.lb]
        listen = "{address}:{PORT}"
        engine = "{engine}"
        hosts = ["h1", "h2"]
        vip = "{address}/24"
        workers = 1
        drain_timeout = "3s"
        server_timeout = "3s"

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "300ms"
        fall = 2
        """)


def read_records(log: Path) -> list[dict[str, Any]]:
    """A looping client's log (pair_client.py, pair_tls_client.py): one record a request."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


class LoopClient:
    """A looping client SCRIPT in HOST's namespace, given ARGS and then its LOG."""

    def __init__(self, host: TestHost, script: Path, args: list[str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, sys.executable, str(script), *args, str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.log)

    def answers_after(self, moment: float, cert: str | None = None) -> int:
        """Requests answered that started after MOMENT (with CERT: served that certificate)."""
        return sum(1 for r in self.records() if r["ok"] and r["start"] > moment and (cert is None or r["cert"] == cert))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def pair_row(farm: Farm) -> dict[str, Any]:
    row = next(r for r in farm.status()["roles"] if r["name"] == "web")
    pair: dict[str, Any] = row["lb_pair"]
    return pair


def holder_is(farm: Farm, wanted: Callable[[str | None], bool]) -> dict[str, Any] | None:
    pair = pair_row(farm)
    return pair if wanted(pair["holder"]) else None


def member_back(farm: Farm, name: str) -> dict[str, Any] | None:
    """The member answers again as a backup with its balancer running."""
    pair = pair_row(farm)
    member = pair["members"][name]
    ok = member["reachable"] and member["balancer"] == "running" and member["state"] == "BACKUP"
    return pair if ok else None


def wait_pair(farm: Farm, condition: Callable[[], Any], timeout: float, what: str,
              members: list[TestHost] | None = None) -> Any:
    """wait_for, and on failure the pair as the status shows it (what the test was waiting on)
    and the end of each member's keepalived log."""
    try:
        return wait_for(condition, timeout, what)
    except AssertionError as error:
        try:
            seen: Any = pair_row(farm)
        except Exception as status_error:  # noqa: BLE001 - a detail for the message
            seen = status_error
        logs = ""
        for host in members or []:
            log = host.base_dir / "lb" / "web" / "keepalived.log"
            tail = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else []
            logs += f"\n--- {host.name} keepalived.log\n" + "\n".join(tail)
        raise AssertionError(f"{error}; the pair: {seen}{logs}") from None


def states(host: TestHost, role: str = "web") -> list[tuple[float, str]]:
    """keepalived's transitions on a member as its notify script stamped them: (time, state)."""
    path = host.base_dir / "lb" / role / "states"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) == 2:
            found.append((float(parts[0]), parts[1]))
    return found


def became_master_after(host: TestHost, moment: float) -> float | None:
    return next((at for at, state in states(host) if state == "MASTER" and at > moment), None)


def kill_balancer(host: TestHost) -> None:
    """kill -9 every process of the member's balancer (the builtin engine's supervisor and
    workers, or HAProxy's processes: each a group of its own)."""
    folder = str(host.base_dir / "lb" / "web")
    groups = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if folder in cmdline and ("farmhand.lb.engine" in cmdline or "haproxy.cfg" in cmdline):
            groups.add(os.getpgid(process.pid))
    assert groups, f"no balancer process found on {host.name}"
    for group in groups:
        os.killpg(group, signal.SIGKILL)


def member_processes(members: list[TestHost]) -> list[str]:
    """Processes started for the pair on these hosts (their command lines name its folder)."""
    markers = [str(h.base_dir / "lb" / "web") for h in members]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(marker in cmdline for marker in markers):
            found.append(cmdline)
    return found
