"""What a farm of real local nodes costs the controller at rest, beside HAProxy checking them.

    .venv/bin/python bench/rest_cost.py [--nodes 30] [--seconds 30] [--variants full,bare]
                                        [--no-haproxy] [--json out.json]

For each variant a real farm is started on this machine (``farmhand up --detach``) with
``--nodes`` nodes of the demo app (``examples/app.py``); once every node is running and the
farm has settled, the controller's CPU time (user + system, from /proc through psutil) is read
over ``--seconds`` and given as % of one core. Nothing else happens meanwhile: nobody calls
the API (the last `farmhand status` was over a minute before), no traffic flows. Variants:

- ``full``: HTTP health check of ``/health`` every 1 s, and a builtin balancer (``lb``);
- ``nolb``: the same checks, no balancer;
- ``bare``: no check and no balancer (what the controller costs with nothing to check).

HAProxy (Debian's ``haproxy``) is then pointed at the same nodes of the first variant: a
generated ``haproxy.cfg`` with one backend of all of them, ``option httpchk GET /health`` and
``check inter 1s``, run in the foreground; its CPU is read over the same number of seconds.
The builtin balancer's own processes are measured too (they check only backends that
passive health ejected, so at rest they should idle).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"
FARMHAND = [sys.executable, "-m", "farmhand"]
SETTLE = 65.0
"""Seconds after all nodes run (and after the bench's last `farmhand status`) before
measuring: start grace, first samples, balancer pushes, and the controller's ``READ_HOLD``
(60 s), since a status read makes it sample at the watched pace for a minute."""
STEP = 30
"""Nodes started at a time: 300 Python processes starting at once on two cores starve
everything (the balancer then misses its deadlines and `up` gives up)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def farm_toml(nodes: int, *, health: bool, lb: bool) -> str:
    """The farm; it starts with at most ``STEP`` nodes and grows by ``farmhand scale``."""
    text = textwrap.dedent(f"""\
        [farm]
        name = "rest"

        [hosts.local]
        driver = "local"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}} --host {{host}}"
        count = {min(nodes, STEP)}
        port = "auto"
        stop_grace = "5s"
        """)
    if lb:
        text += f'lb = {{ listen = "127.0.0.1:{free_port()}", mode = "http" }}\n'
    if health:
        text += textwrap.dedent("""
            [roles.web.health]
            type = "http"
            path = "/health"
            interval = "1s"
            timeout = "1s"
            start_grace = "30s"
            """)
    return text


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds used so far; 0 for a process that is gone (a short-lived helper)."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def measure(processes: list[psutil.Process], seconds: float) -> float:
    """% of one core used by ``processes`` together over ``seconds``."""
    before = [cpu_seconds(p) for p in processes]
    start = time.monotonic()
    time.sleep(seconds)
    after = [cpu_seconds(p) for p in processes]
    elapsed = time.monotonic() - start
    return 100.0 * (sum(after) - sum(before)) / elapsed


class BenchFarm:
    def __init__(self, folder: Path, text: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        shutil.copy(APP, folder / "app.py")
        (folder / "farm.toml").write_text(text)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run([*FARMHAND, *args], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"farmhand {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json", check=False) or "{}"))

    def wait_running(self, nodes: int, timeout: float) -> list[dict[str, Any]]:
        """The running nodes once ``nodes`` run, or those that run after ``timeout`` (a
        controller that cannot keep up may never get them all running: that is a result)."""
        deadline = time.monotonic() + timeout
        running: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                listed = self.status().get("nodes", [])
            except ValueError:
                listed = []
            running = [n for n in listed if n.get("state") == "running"]
            if len(running) >= nodes:
                break
            time.sleep(1.0)
        return running

    def controller(self) -> psutil.Process:
        info = json.loads((self.folder / ".farmhand" / "api.json").read_text())
        return psutil.Process(int(info["pid"]))

    def balancers(self, controller: psutil.Process) -> list[psutil.Process]:
        """This farm's balancer processes: started with its folder (or the short folder linked
        from its .farmhand/, for socket path limits) on their command line."""
        state = self.folder / ".farmhand"
        markers = [str(self.folder)] + [str(link.resolve()) for link in state.glob("*/*") if link.is_symlink()]
        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if (process.pid != controller.pid and "farmhand.lb" in cmdline
                    and any(marker in cmdline for marker in markers)):
                found.append(process)
        return found

    def down(self) -> None:
        """Stop the farm, then kill whatever of it is left (found by its folder or farm id)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli("down", "--timeout", "60", check=False, timeout=120)
        # the id every node carries (StateDir.farm_id; computed here so the bench runs
        # against any version of farmhand)
        farm_id = hashlib.sha256(str((self.folder / ".farmhand").resolve()).encode()).hexdigest()[:16]
        for process in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error, OSError):
                tagged = process.environ().get("FARMHAND_FARM") == farm_id
                if tagged or str(self.folder) in " ".join(process.info["cmdline"] or []):
                    process.kill()


def haproxy_config(nodes: list[dict[str, Any]]) -> str:
    servers = "\n".join(f"    server {n['id']} 127.0.0.1:{n['port']} check inter 1s" for n in nodes)
    return textwrap.dedent("""\
        global
            maxconn 4096
        defaults
            mode http
            timeout connect 1s
            timeout client 30s
            timeout server 30s
            timeout check 1s
        frontend web
            bind 127.0.0.1:{port}
            default_backend nodes
        backend nodes
            option httpchk GET /health
            http-check expect status 200
        """).format(port=free_port()) + servers + "\n"


def haproxy_cost(nodes: list[dict[str, Any]], seconds: float, folder: Path) -> float:
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(nodes))
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # its first round of checks
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited {process.returncode}: check {config}")
        return measure([psutil.Process(process.pid)], seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


VARIANTS = {"full": (True, True), "nolb": (True, False), "bare": (False, False)}


def run_variant(name: str, nodes: int, seconds: float, folder: Path, haproxy: bool) -> dict[str, Any]:
    health, lb = VARIANTS[name]
    farm = BenchFarm(folder / name, farm_toml(nodes, health=health, lb=lb))
    result: dict[str, Any] = {"variant": name, "nodes": nodes, "seconds": seconds, "health": health, "lb": lb}
    try:
        farm.cli("up", "--detach", "farm.toml", "--timeout", "300", timeout=400)
        running = farm.wait_running(min(nodes, STEP), timeout=120)
        for count in range(2 * STEP, nodes + STEP, STEP):
            farm.cli("scale", "web", str(min(count, nodes)))
            running = farm.wait_running(min(count, nodes), timeout=240)
        time.sleep(SETTLE)
        result["running_before"] = len(running)
        controller = farm.controller()
        balancers = farm.balancers(controller)
        before_lb = {p.pid: cpu_seconds(p) for p in balancers}
        result["controller_cpu_percent"] = round(measure([controller], seconds), 2)
        result["controller_rss_mb"] = round(controller.memory_info().rss / 1e6, 1)
        result["running_after"] = len(farm.wait_running(nodes, timeout=0.1))
        if balancers:
            spent = sum(max(0.0, cpu_seconds(p) - before_lb[p.pid]) for p in balancers)
            result["balancer_cpu_percent"] = round(100.0 * spent / seconds, 2)
        if haproxy:
            result["haproxy_cpu_percent"] = round(haproxy_cost(running, seconds, folder / name), 2)
    finally:
        farm.down()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--variants", default="full,nolb,bare", help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--no-haproxy", action="store_true", help="do not measure HAProxy")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not args.no_haproxy and shutil.which("haproxy") is None:
        parser.error("haproxy is not installed (apt-get install haproxy), or pass --no-haproxy")
    results = []
    with tempfile.TemporaryDirectory(prefix="farmhand-rest-") as temporary:
        for index, name in enumerate(variants):
            result = run_variant(name, args.nodes, args.seconds, Path(temporary),
                                 haproxy=not args.no_haproxy and index == 0)
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
