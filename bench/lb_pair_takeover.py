"""Takeover time of a load-balancer pair (issue 14): how long the floating address is gone
when the active member's link is cut, and when its balancer is killed with -9.

    sudo .venv/bin/python bench/lb_pair_takeover.py [--trials 20] [--engine builtin|haproxy]

Four test hosts (network namespaces on a bridge, tests/testhosts.py): h1 and h2 run the
pair (farmhand's ``PairDataPlane``: builtin engine + watcher + keepalived on each, over SSH),
h3 one backend (examples/app.py), h4 a client looping requests to the address
(tests/integration/hosts/pair_client.py: one at a time, a new connection each, 1 s timeout).
Two configurations in the same run, measured the same way:

- farmhand: VRRPv3, ``advert_int 0.1``, the watcher's track file (a dead balancer faults the
  instance at once), nopreempt;
- keepalived's defaults: ``advert_int 1`` and only the check script (keepalived runs scripts
  at most once a second), the rest the same.

Takeover = keepalived's MASTER stamp on the new holder (its notify script) minus the moment
of the cut or kill. ``first answer`` = the client's first successful request that started
after the failure, ended, minus the failure's moment (it includes the 1 s timeout of the
request caught in flight). ``failed`` counts the client's failed requests between the failure
and that first answer. After each trial the failed member is given back (link restored, or
its balancer started again) and the next trial fails whichever member holds the address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from tests.integration.hosts.pairkit import read_records, states  # noqa: E402

from farmhand.dataplane import Backend  # noqa: E402
from farmhand.lb.pair import PairDataPlane  # noqa: E402
from farmhand.spec import parse_farm  # noqa: E402
from testhosts_net import ROOT_USER, TestHost, TestHostRun, create_run  # noqa: E402

CLIENT = REPO / "tests" / "integration" / "hosts" / "pair_client.py"
APP = REPO / "examples" / "app.py"
PORT = 8080
APP_PORT = 9000


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what} within {timeout}s")


def farm_text(run: TestHostRun, role: str, vrrp_id: int, engine: str) -> str:
    tables = []
    for host in run.hosts[:2]:
        fields = host.spec_fields(user=ROOT_USER)
        tables.append(f"[hosts.{host.name}]\n" + "".join(
            f"{k} = {v!r}\n" if isinstance(v, int) else f'{k} = "{v}"\n' for k, v in fields.items()))
    vip = f"10.213.{run.subnet}.100"
    return "\n".join(tables) + f"""
[roles.{role}]
command = "unused {{port}}"
[roles.{role}.lb]
listen = "{vip}:{PORT}"
engine = "{engine}"
hosts = ["h1", "h2"]
vip = "{vip}/24"
vrrp_id = {vrrp_id}
workers = 1
"""


def holder(run: TestHostRun, role: str) -> TestHost | None:
    for host in run.hosts[:2]:
        last = states(host, role)
        if last and last[-1][1] == "MASTER":
            return host
    return None


def state_after(host: TestHost, role: str, wanted: str, moment: float) -> float | None:
    return next((at for at, state in states(host, role) if state == wanted and at > moment), None)


def kill_balancer(host: TestHost, role: str) -> None:
    folder = str(host.base_dir / "lb" / role)
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if folder in cmdline and ("farmhand.lb.engine" in cmdline or "haproxy.cfg" in cmdline):
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def first_answer_after(log: Path, moment: float) -> dict[str, Any] | None:
    return next((r for r in read_records(log) if r["ok"] and r["start"] > moment), None)


async def trial(run: TestHostRun, plane: PairDataPlane, role: str, log: Path, kind: str) -> dict[str, float]:
    active = await asyncio.to_thread(wait, lambda: holder(run, role), 30, "a holder")
    spare = next(h for h in run.hosts[:2] if h is not active)
    at = time.time()
    if kind == "link":
        run.cut(active)
    else:
        kill_balancer(active, role)
    took = await asyncio.to_thread(wait, lambda: state_after(spare, role, "MASTER", at), 60, "takeover")
    answer = await asyncio.to_thread(wait, lambda: first_answer_after(log, at), 60, "an answer")
    failed = sum(1 for r in read_records(log) if not r["ok"] and at <= r["start"] <= answer["end"])
    if kind == "link":
        run.restore(active)
    else:
        await plane.ensure_running()  # what the controller does within its 2 s watch
    await asyncio.to_thread(wait, lambda: state_after(active, role, "BACKUP", at), 60, "the old holder back as a backup")
    return {"takeover": took - at, "first_answer": answer["end"] - at, "failed": failed}


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    takeovers = sorted(r["takeover"] for r in rows)
    answers = sorted(r["first_answer"] for r in rows)
    p95 = takeovers[max(0, round(0.95 * len(takeovers)) - 1)]
    return {"n": len(rows), "takeover_median": statistics.median(takeovers), "takeover_p95": p95,
            "takeover_max": takeovers[-1], "first_answer_median": statistics.median(answers),
            "failed_total": sum(r["failed"] for r in rows), "failed_max": max(r["failed"] for r in rows)}


async def measure(run: TestHostRun, variant: str, vrrp_id: int, trials: int, state_dir: Path,
                  engine: str) -> dict[str, Any]:
    role = f"bench{vrrp_id}"
    spec = parse_farm(farm_text(run, role, vrrp_id, engine))
    lb = spec.roles[role].lb
    assert lb is not None
    plane = PairDataPlane(role, lb, None, state_dir)
    if variant == "keepalived defaults":
        for member in plane.members.values():
            member.plan = replace(member.plan, advert_int=1.0, watch=False)
    log = state_dir / f"client-{role}.jsonl"
    client = None
    try:
        await plane.ensure_running()
        await plane.set_backends([Backend("app", run.hosts[2].address, APP_PORT)])
        client = subprocess.Popen(["ip", "netns", "exec", run.hosts[3].netns, sys.executable, str(CLIENT),  # noqa: ASYNC220
                                   f"http://10.213.{run.subnet}.100:{PORT}/", str(log)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.to_thread(wait, lambda: first_answer_after(log, 0), 60, "first answer")
        results: dict[str, Any] = {}
        for kind in ("link", "kill"):
            rows = []
            for index in range(trials):
                row = await trial(run, plane, role, log, kind)
                rows.append(row)
                print(f"{variant:>20} {kind:>4} #{index + 1:>2}: takeover {row['takeover']:.3f}s, "
                      f"first answer {row['first_answer']:.3f}s, failed {row['failed']:.0f}", flush=True)
            results[kind] = summary(rows)
        return results
    finally:
        if client is not None:
            client.terminate()
            client.wait(timeout=10)
        await plane.stop()


async def main(trials: int, engine: str) -> None:
    run = create_run(4, root_login=True)
    state_dir = Path(tempfile.mkdtemp(prefix="fh-pair-bench-"))
    app = subprocess.Popen(["ip", "netns", "exec", run.hosts[2].netns, sys.executable, str(APP),  # noqa: ASYNC220
                            "--port", str(APP_PORT), "--node", "app", "--host", "0.0.0.0"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        figures = {}
        for vrrp_id, variant in ((61, "farmhand"), (62, "keepalived defaults")):
            figures[variant] = await measure(run, variant, vrrp_id, trials, state_dir, engine)
        print(json.dumps({"engine": engine, "machine": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg(),
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "trials": trials,
                          "figures": figures}, indent=2))
    finally:
        app.terminate()
        app.wait(timeout=10)
        run.close()
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--engine", choices=["builtin", "haproxy"], default="builtin")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.trials, arguments.engine))
