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

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.farmkit import APP, Farm, wait_for
from tests.integration.hosts.pairkit import (
    PORT,
    LoopClient,
    became_master_after,
    farm_text,
    holder_is,
    kill_balancer,
    member_back,
    member_processes,
    pair_row,
    pair_run,
    served_folder,
    vip_of,
    wait_pair,
)
from tests.testhosts import TestHostRun

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("pair_client.py")


@pytest.fixture(scope="module")
def hosts() -> Iterator[TestHostRun]:
    """h1, h2: the pair (root logins: keepalived moves an address); h3: the nodes; h4: the client."""
    yield from pair_run("keepalived", missing="keepalived is not installed (scripts/bootstrap)")


@pytest.fixture
def app_folder() -> Iterator[Path]:
    yield from served_folder("fh-app-", APP, "app.py")


def first_answer_after(client: LoopClient, took: float) -> float:
    """When the first request that started after the takeover was answered: from then on the
    client is served by the new holder, so every later failure would be the pair's fault."""
    return float(min(r["end"] for r in client.records() if r["ok"] and r["start"] > took))


def failures_between(client: LoopClient, start: float, end: float) -> list[dict[str, Any]]:
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
    client = LoopClient(by_name["h4"], CLIENT, [f"http://{vip_of(run)}:{PORT}/"], log)
    try:
        wait_for(lambda: client.answers_after(0) >= 20, 30, "the client's first answers through the address")

        # 1. cut the active member's link; kill the controller while it is cut
        cut_at = time.time()
        with run.link_cut(by_name[active]):
            took = wait_for(lambda: became_master_after(by_name[other], cut_at), 30, f"{other} taking the address")
            print(f"\nlink cut: {other} took the address {took - cut_at:.3f}s after the cut")
            wait_for(lambda: client.answers_after(took) >= 5, 30, "answers through the new holder")
            answered_at = first_answer_after(client, took)
            print(f"link cut: the client's first answer through {other} {answered_at - cut_at:.3f}s after the cut")
            os.kill(farm.controller_pid(), signal.SIGKILL)
            killed_at = time.time()
            wait_for(lambda: client.answers_after(killed_at) >= 20, 30, "answers with the controller dead")
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
        wait_for(lambda: client.answers_after(took) >= 5, 30, "answers through the new holder")
        answered_at = first_answer_after(client, took)
        print(f"balancer kill: the client's first answer through {spare} {answered_at - killed_at:.3f}s after the kill")
        wait_pair(farm, lambda: member_back(farm, holder), 60, f"{holder}'s balancer started again, {holder} a backup",
                  [by_name["h1"], by_name["h2"]])
        wait_pair(farm, lambda: holder_is(farm, lambda h: h == spare), 30, f"the status naming {spare} as holder")
        table = farm.cli("status").stdout  # people read the same in the roles table
        assert f"{vip_of(hosts)} on {spare}" in table, table
        events = farm.events()
        assert any(e["kind"] == "lb.member_restarted" and holder in e["message"] for e in events), events[-10:]
        assert any(e["kind"] == "lb.vip_moved" and spare in e["message"] for e in events), events[-10:]
        repaired_at = time.time()
        wait_for(lambda: client.answers_after(repaired_at) >= 20, 30, "answers after the repair")
        assert became_master_after(by_name[holder], killed_at) is None, "the restarted member took the address back"
        lost = failures_between(client, killed_at, time.time())
        print(f"balancer kill: {len(lost)} failed request(s): {[r['detail'] for r in lost]}")
        assert all(r["start"] < answered_at for r in lost), "failures only of requests sent before the new holder answered"

        # 4. a reload that changes the lb table changes the pair in place: the address stays
        reload_at = time.time()
        farm.file.write_text(farm.file.read_text().replace('server_timeout = "3s"', 'server_timeout = "4s"'))
        farm.cli("reload")
        wait_for(lambda: client.answers_after(reload_at) >= 40, 30, "answers after the reload")
        wait_pair(farm, lambda: holder_is(farm, lambda h: h == spare), 30, f"the status naming {spare} as holder after the reload")
        assert not any(became_master_after(h, reload_at) for h in (by_name["h1"], by_name["h2"])), "the address moved"
        assert not failures_between(client, reload_at, time.time()), "no failure across the reload"

        # 5. down stops what runs on the members, and the address is gone
        farm.cli("down", "--timeout", "30")
        pair_hosts = [by_name["h1"], by_name["h2"]]
        wait_for(lambda: not member_processes(pair_hosts), 30, "no balancer, watcher or keepalived left on h1 and h2")
        vip = f"{vip_of(run)}/"
        assert not any(vip in run.run_in(h, "ip", "-o", "-4", "addr").stdout for h in pair_hosts)
    finally:
        client.stop()
        shutil.rmtree(log.parent, ignore_errors=True)
