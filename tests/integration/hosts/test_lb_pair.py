"""Issue 14 on test hosts: a role's load balancer as a pair (h1, h2) behind a floating
address moved by keepalived, its nodes on h3, and a client in h4's network namespace looping
requests to the address throughout:

1. the active member's link is cut: the address moves, the client's failures stop with its
   first answer after the cut (only requests caught in the gap fail); meanwhile the
   controller is killed with -9, which the client never notices;
2. the link returns: the old member comes back as a backup and the address stays put;
3. a new controller adopts the pair; the active member's balancer is killed: the address
   moves, the balancer is started again where it died, and the address does not come back;
4. a reload that changes the lb table keeps the address where it is, with no failure;
5. ``down`` stops the members' balancers, watchers and keepalived, and the address is gone.

Takeover times are printed (measured from keepalived's own transition stamps), not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.integration.farmkit import APP, Farm, wait_for
from tests.testhosts import ROOT_USER, TestHost, TestHostRun, create_run

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("pair_client.py")
PORT = 8080


@pytest.fixture(scope="module")
def hosts() -> Iterator[TestHostRun]:
    """h1, h2: the pair (root logins: keepalived moves an address); h3: the nodes; h4: the client."""
    if os.geteuid() != 0:
        pytest.skip("test hosts need root (network namespaces, sshd)")
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed (scripts/bootstrap)")
    run = create_run(4, root_login=True)
    try:
        yield run
    finally:
        run.close()


@pytest.fixture
def app_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="fh-app-"))
    folder.chmod(0o755)
    shutil.copy(APP, folder / "app.py")
    (folder / "app.py").chmod(0o644)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Client:
    """pair_client.py in a host's namespace; its log read back as records."""

    def __init__(self, run: TestHostRun, host: TestHost, url: str, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, sys.executable, str(CLIENT), url, str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def successes_after(self, moment: float) -> int:
        return sum(1 for r in self.records() if r["ok"] and r["start"] > moment)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def farm_text(run: TestHostRun, app: Path, engine: str) -> str:
    tables = []
    for host in run.hosts[:3]:
        user = ROOT_USER if host.name in ("h1", "h2") else host.user
        fields = host.spec_fields(user=user)
        lines = [f"[hosts.{host.name}]"] + [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in fields.items()]
        if host.name == "h3":
            lines.append('labels = { nodes = "yes" }')
        tables.append("\n".join(lines) + "\n")
    vip = f"10.213.{run.subnet}.100"
    return "\n".join(tables) + textwrap.dedent(f"""\
        [farm]
        host_timeout = "4s"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}} --host {{host}}"
        workdir = "{app}"
        count = 2
        stop_grace = "3s"
        require = {{ nodes = "yes" }}

        [roles.web.lb]
        listen = "{vip}:{PORT}"
        engine = "{engine}"
        hosts = ["h1", "h2"]
        vip = "{vip}/24"
        workers = 1
        drain_timeout = "3s"
        server_timeout = "3s"

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "300ms"
        fall = 2
        """)


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


def states(host: TestHost) -> list[tuple[float, str]]:
    path = host.base_dir / "lb" / "web" / "states"
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


def first_answer_after(client: Client, took: float) -> float:
    """When the first request that started after the takeover was answered: from then on the
    client is served by the new holder, so every later failure would be the pair's fault."""
    return float(min(r["end"] for r in client.records() if r["ok"] and r["start"] > took))


def member_processes(members: list[TestHost]) -> list[str]:
    """Processes started for the pair on these hosts (their command lines name its folder)."""
    markers = [str(h.base_dir / "lb" / "web") for h in members]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(marker in cmdline for marker in markers):
            found.append(cmdline)
    return found


def failures_between(client: Client, start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in client.records() if not r["ok"] and start <= r["start"] <= end]


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_pair_moves_its_address_and_never_flaps(hosts: TestHostRun, make_farm: Callable[..., Farm], app_folder: Path,
                                                engine: str) -> None:
    if engine == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap)")
    run = hosts
    by_name = {h.name: h for h in run.hosts}
    farm = make_farm(farm_text(run, app_folder, engine))
    print(f"\n{engine}:", end="")
    farm.up()
    farm.wait_ready("web", 2, timeout=60)
    first = wait_for(lambda: holder_is(farm, lambda h: h in ("h1", "h2")), 30, "a member holding the address")
    active = first["holder"]
    other = "h2" if active == "h1" else "h1"
    wait_pair(farm, lambda: member_back(farm, other), 30, f"{other} as a backup with its balancer running",
              [by_name["h1"], by_name["h2"]])

    log = Path(tempfile.mkdtemp(prefix="fh-pair-client-")) / "client.jsonl"
    client = Client(run, by_name["h4"], f"http://10.213.{run.subnet}.100:{PORT}/", log)
    try:
        wait_for(lambda: client.successes_after(0) >= 20, 30, "the client's first answers through the address")

        # 1. cut the active member's link; kill the controller while it is cut
        cut_at = time.time()
        with run.link_cut(by_name[active]):
            took = wait_for(lambda: became_master_after(by_name[other], cut_at), 30, f"{other} taking the address")
            print(f"\nlink cut: {other} took the address {took - cut_at:.3f}s after the cut")
            wait_for(lambda: client.successes_after(took) >= 5, 30, "answers through the new holder")
            answered_at = first_answer_after(client, took)
            print(f"link cut: the client's first answer through {other} {answered_at - cut_at:.3f}s after the cut")
            os.kill(farm.controller_pid(), signal.SIGKILL)
            killed_at = time.time()
            wait_for(lambda: client.successes_after(killed_at) >= 20, 30, "answers with the controller dead")
        restored_at = time.time()
        lost = failures_between(client, cut_at, time.time())
        print(f"link cut: {len(lost)} failed request(s): {[r['detail'] for r in lost]}")
        assert all(r["start"] < answered_at for r in lost), "failures only of requests sent before the new holder answered"

        # 2. the link is back: the old member returns as a backup; the address stays
        farm.up()  # a new controller adopts the pair
        wait_pair(farm, lambda: member_back(farm, active), 60, f"{active} back as a backup",
                  [by_name["h1"], by_name["h2"]])
        assert pair_row(farm)["holder"] == other
        assert became_master_after(by_name[active], restored_at) is None, "the old holder took the address back"
        events = farm.events()
        assert any(e["kind"] == "lb.adopted" and e["role"] == "web" for e in events)
        assert not failures_between(client, answered_at, time.time()), "no failure once the new holder answered"

        # 3. kill the active balancer: the address moves, the balancer restarts where it died
        holder, spare = other, active
        killed_at = time.time()
        kill_balancer(by_name[holder])
        took = wait_for(lambda: became_master_after(by_name[spare], killed_at), 30, f"{spare} taking the address")
        print(f"balancer kill: {spare} took the address {took - killed_at:.3f}s after the kill")
        wait_for(lambda: client.successes_after(took) >= 5, 30, "answers through the new holder")
        answered_at = first_answer_after(client, took)
        print(f"balancer kill: the client's first answer through {spare} {answered_at - killed_at:.3f}s after the kill")
        wait_pair(farm, lambda: member_back(farm, holder), 60, f"{holder}'s balancer started again, {holder} a backup",
                  [by_name["h1"], by_name["h2"]])
        wait_pair(farm, lambda: holder_is(farm, lambda h: h == spare), 30, f"the status naming {spare} as holder")
        table = farm.cli("status").stdout  # people read the same in the roles table
        assert f"10.213.{hosts.subnet}.100 on {spare}" in table, table
        events = farm.events()
        assert any(e["kind"] == "lb.member_restarted" and holder in e["message"] for e in events), events[-10:]
        assert any(e["kind"] == "lb.vip_moved" and spare in e["message"] for e in events), events[-10:]
        repaired_at = time.time()
        wait_for(lambda: client.successes_after(repaired_at) >= 20, 30, "answers after the repair")
        assert became_master_after(by_name[holder], killed_at) is None, "the restarted member took the address back"
        lost = failures_between(client, killed_at, time.time())
        print(f"balancer kill: {len(lost)} failed request(s): {[r['detail'] for r in lost]}")
        assert all(r["start"] < answered_at for r in lost), "failures only of requests sent before the new holder answered"

        # 4. a reload that changes the lb table changes the pair in place: the address stays
        reload_at = time.time()
        farm.file.write_text(farm.file.read_text().replace('server_timeout = "3s"', 'server_timeout = "4s"'))
        farm.cli("reload")
        wait_for(lambda: client.successes_after(reload_at) >= 40, 30, "answers after the reload")
        wait_pair(farm, lambda: holder_is(farm, lambda h: h == spare), 30, f"the status naming {spare} as holder after the reload")
        assert not any(became_master_after(h, reload_at) for h in (by_name["h1"], by_name["h2"])), "the address moved"
        assert not failures_between(client, reload_at, time.time()), "no failure across the reload"

        # 5. down stops what runs on the members, and the address is gone
        farm.cli("down", "--timeout", "30")
        pair_hosts = [by_name["h1"], by_name["h2"]]
        wait_for(lambda: not member_processes(pair_hosts), 30, "no balancer, watcher or keepalived left on h1 and h2")
        vip = f"10.213.{run.subnet}.100/"
        assert not any(vip in run.run_in(h, "ip", "-o", "-4", "addr").stdout for h in pair_hosts)
    finally:
        client.stop()
        shutil.rmtree(log.parent, ignore_errors=True)
