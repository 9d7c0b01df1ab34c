"""Autoscaling reaction times, with default settings, beside Kubernetes HPA's defaults.

    .venv/bin/python bench/autoscale_reaction.py [--runs 5] [--rps 60] [--target 20] [--json out.json]

A real farm on this machine (``farmhand up``: the demo app behind the builtin load balancer,
min 1, max 4, health checked every second as in ``examples/web.toml``) whose autoscale table
names only a target, ``requests_per_s`` per node = ``--target``, so every other setting is a
default (1 s sampling, 2 s scale-up and 60 s scale-down stabilization). Each run:

1. the role idles at 1 node;
2. at t0 an open-loop load of ``--rps`` (3 nodes' worth; light enough that a shared 2-vCPU
   machine is not itself the bottleneck, the target being set below a node's capacity as one
   would set it) starts through the load balancer; the
   **scale-up reaction** is t0 -> the first answer from a node other than the first one
   (from the answers' ``X-Node`` header), split with the controller's events into decision,
   start and readiness;
3. after ``--load`` seconds the load stops (t1); the **scale-in reaction** is t1 -> the
   scale-in decision and t1 -> the last drained node stopped.

The HPA column is computed, not measured (there is no Kubernetes here), by walking HPA's
documented defaults over every phase of its loops: a 15 s sync period, 10% tolerance, no
scale-up stabilization, scale-up allowed to max(4 pods, 100%) per 15 s, a 300 s scale-down
stabilization window, and a readiness probe every 10 s (initialDelaySeconds 0,
successThreshold 1). The pod's process is given the start time measured here for the same
app; image pull, scheduling, container creation, the metrics pipeline (metrics-server or a
custom-metrics adapter, with their own scrape and rate windows) and endpoint propagation are
*not* counted, so the HPA figures are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from farmhand.cli.load import LoadRun
from farmhand.store.statedir import StateDir

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"
FARMHAND = [sys.executable, "-m", "farmhand"]
HPA_SYNC = 15.0
HPA_DOWN_WINDOW = 300.0
HPA_PROBE_PERIOD = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def farm_file(port: int, target: float) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "bench"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        min = 1
        max = 4
        stop_grace = "5s"
        lb = {{ listen = "127.0.0.1:{port}", mode = "http" }}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "1s"
        timeout = "1s"

        [roles.web.autoscale]
        target = [{{ metric = "requests_per_s", value = {target:g} }}]
        """)


class Bench:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.url = f"http://127.0.0.1:{port}/"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def cli(self, *args: str) -> str:
        done = subprocess.run([*FARMHAND, *args], cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"farmhand {' '.join(args)}: {done.stderr}")
        return done.stdout

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.cli("status", "--json"))
        return result

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.cli("events", "--json", "-n", "100000").splitlines()]

    def wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if condition():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def one_node(self) -> bool:
        nodes = self.status()["nodes"]
        return len(nodes) == 1 and nodes[0]["state"] == "running"


async def overload(bench: Bench, rps: float, seconds: float, first_nodes: set[str]) -> dict[str, Any]:
    """Run the load; note when an answer first comes from a node not in ``first_nodes``."""
    run = LoadRun(bench.url, rps, seconds, concurrency=200, timeout=10.0)
    seen: dict[str, float] = {}

    async def watch() -> None:
        while True:
            if set(run.tally.nodes) - first_nodes and "new" not in seen:
                seen["new"] = time.time()
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    t0 = time.time()
    summary = await run.run()
    t1 = time.time()
    watcher.cancel()
    return {"t0": t0, "t1": t1, "first_new_answer": seen.get("new"), "summary": summary}


def one_run(bench: Bench, rps: float, seconds: float) -> dict[str, Any]:
    bench.wait(bench.one_node, 180, "the role to be back at one node")
    time.sleep(5)  # idle samples before the step
    first = {n["id"] for n in bench.status()["nodes"]}
    load = asyncio.run(overload(bench, rps, seconds, first))
    bench.wait(bench.one_node, 240, "the scale-in")
    t0, t1 = load["t0"], load["t1"]
    events = [e for e in bench.events() if e["ts"] >= t0]
    ups = [e for e in events if e["kind"] == "role.autoscaled" and e["ts"] < t1]
    downs = [e for e in events if e["kind"] == "role.autoscaled" and e["ts"] >= t1]
    new_nodes = [e for e in events if e["kind"] == "node.started" and e["ts"] < t1]
    ready = [e for e in events if e["kind"] == "node.ready" and e["ts"] < t1]
    stopped = [e for e in events if e["kind"] == "node.stopped" and e["ts"] >= t1]
    return {
        "decision_s": ups[0]["ts"] - t0 if ups else None,
        "first_start_s": new_nodes[0]["ts"] - t0 if new_nodes else None,
        "first_ready_s": ready[0]["ts"] - t0 if ready else None,
        "first_traffic_s": load["first_new_answer"] - t0 if load["first_new_answer"] else None,
        "peak_nodes": 1 + len(new_nodes),
        "scale_in_decision_s": downs[0]["ts"] - t1 if downs else None,
        "scale_in_done_s": stopped[-1]["ts"] - t1 if stopped else None,
        "up_reason": ups[0]["message"] if ups else None,
        "down_reason": downs[0]["message"] if downs else None,
        "client": {k: load["summary"][k] for k in ("requests", "ok", "errors", "rps", "latency_ms", "nodes")},
    }


def app_start_time(samples: int = 5) -> float:
    """Median seconds from spawning the demo app to its first accepted connection."""
    times = []
    for _ in range(samples):
        port = free_port()
        began = time.monotonic()
        child = subprocess.Popen([sys.executable, str(APP), "--port", str(port)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
                time.sleep(0.002)
            times.append(time.monotonic() - began)
        finally:
            child.terminate()
            child.wait()
    return statistics.median(times)


def hpa_scale_up(app_start: float, steps: int = 1500) -> dict[str, float]:
    """Seconds from the load step to the first new pod ready, over every sync phase.

    The step lands at 0; HPA's sync runs at phase + 15 k. The first sync at or after 0 sees
    the load (metrics taken as instant) and scales at once (no up stabilization; 1 -> 3 is
    within max(4, 100%)). The container starts then; kubelet probes readiness when the
    container starts and every 10 s after, so a probe that comes before the process
    listens fails and readiness waits for the next one."""
    results = []
    for i in range(steps):
        decision = HPA_SYNC * i / steps
        listening = decision + app_start
        probe = decision
        while probe < listening:
            probe += HPA_PROBE_PERIOD
        results.append(probe)
    return {"best": min(results), "mean": statistics.fmean(results), "worst": max(results)}


def hpa_scale_in(steps: int = 1500) -> dict[str, float]:
    """Seconds from the end of load to the scale-in decision, over every sync phase: the last
    high recommendation came from the last sync before the end; the count falls at the first
    sync where it is no longer within the 300 s window (HPA keeps recommendations newer than
    now - window)."""
    results = []
    for i in range(steps):
        phase = HPA_SYNC * i / steps
        last_high = phase - HPA_SYNC
        sync = phase
        while sync - last_high < HPA_DOWN_WINDOW - 1e-6:
            sync += HPA_SYNC
        results.append(sync)
    return {"best": min(results), "mean": statistics.fmean(results), "worst": max(results)}


def _debian() -> str:
    version = Path("/etc/debian_version")
    return version.read_text().strip() if version.exists() else "?"


def summarize(runs: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rps", type=float, default=60.0)
    parser.add_argument("--target", type=float, default=20.0, help="requests/s per node the role aims at")
    parser.add_argument("--load", type=float, default=20.0, help="seconds of overload per run")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="farmhand-autoscale-bench-"))
    shutil.copy(APP, folder / "app.py")
    port = free_port()
    (folder / "farm.toml").write_text(farm_file(port, args.target))
    bench = Bench(folder, port)
    app_start = app_start_time()
    runs = []
    try:
        bench.cli("up", "--detach", "farm.toml", "--timeout", "60")
        time.sleep(4)
        for number in range(args.runs):
            run = one_run(bench, args.rps, args.load)
            runs.append(run)
            print(f"run {number + 1}: {json.dumps(run)}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            bench.cli("down", "--timeout", "30")
        with contextlib.suppress(Exception):
            pid = int(StateDir.beside(folder / "farm.toml").read_api()["pid"])
            os.kill(pid, 9)
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "machine": f"{os.cpu_count()} vCPU, Debian {_debian()}, load average {os.getloadavg()[0]:.2f} at the end",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load": {"rps": args.rps, "target_per_node": args.target, "seconds": args.load},
        "app_start_s": round(app_start, 3),
        "farmhand": {key: summarize(runs, key) for key in
                     ("decision_s", "first_start_s", "first_ready_s", "first_traffic_s",
                      "scale_in_decision_s", "scale_in_done_s")},
        "client_errors": sum(r["client"]["errors"] for r in runs),
        "client_requests": sum(r["client"]["requests"] for r in runs),
        "hpa": {"first_ready_s": {k: round(v, 2) for k, v in hpa_scale_up(app_start).items()},
                "scale_in_decision_s": {k: round(v, 2) for k, v in hpa_scale_in().items()}},
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
