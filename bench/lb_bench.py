"""Load-balancer benchmark: wrk -> (nothing | builtin engine | HAProxy) -> nginx, on loopback.

    .venv/bin/python bench/lb_bench.py [--duration 5] [--connections 50] [--json out.json]

Everything runs on this machine: nginx (Debian's, started here with its own config in a
temp folder, one process, a 12-byte body), the proxy under test through farmhand's own
``make_data_plane`` (the same code the controller uses), and wrk with keep-alive. For each
proxy and mode (http, tcp) and worker count (1, then 2) it reports requests/s, p50/p99
latency and the proxy's CPU per request: utime+stime of every proxy process from /proc,
before and after the run, divided by the requests wrk counted. CPU per request is the
steadier figure on a shared 2-vCPU machine; throughput moves with whatever else runs.

A last run kills one of two nginx backends with -9 in the middle of a wrk run, for each
engine in http mode, and reports the failed requests wrk saw (non-2xx and socket errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from farmhand.dataplane import Backend
from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec

BODY = "hello world\n"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """One single-process nginx serving ``BODY`` on a loopback port."""

    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        default_type text/plain;
        location / {{ return 200 "{BODY.strip()}\\n"; }}
    }}
}}
"""
        )
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(self.dir / 'error.log').read_text()}")
            time.sleep(0.02)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Run:
    target: str
    mode: str
    workers: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_req: float | None


def parse_wrk(text: str) -> dict[str, Any]:
    def duration_ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    done = re.search(r"(\d+) requests in ([\d.]+)(s|ms|m)", text)
    assert done, text
    seconds = float(done.group(2)) * {"s": 1, "ms": 0.001, "m": 60}[done.group(3)]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.M))
    errors = 0
    if socket_errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(x) for x in socket_errors.groups())
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(non_2xx.group(1))
    return {
        "requests": int(done.group(1)),
        "seconds": seconds,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": duration_ms(percentiles["50"]),
        "p99_ms": duration_ms(percentiles["99"]),
        "errors": errors,
    }


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total


def children(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += children(int(child))
    return found


async def wrk(port: int, duration: float, connections: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", f"http://127.0.0.1:{port}/",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return out.decode()


async def measure(target: str, mode: str, workers: int, port: int, pids: list[int], args: argparse.Namespace) -> Run:
    await wrk(port, 1, args.connections)  # warm up: pools filled, caches hot
    before = cpu_ticks(pids)
    result = parse_wrk(await wrk(port, args.duration, args.connections))
    used = cpu_ticks(pids) - before
    cpu = round(used / TICKS / result["requests"] * 1e6, 1) if pids and result["requests"] else None
    run = Run(target, mode, workers, cpu_us_per_req=cpu, **result)
    print(
        f"{target:8} {mode:4} w={workers}  {run.rps:9.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
        f"  cpu {cpu if cpu is not None else '-':>6} us/req  errors {run.errors}",
        flush=True,
    )
    return run


def engine_pids(run_dir: Path, engine: str) -> list[int]:
    pidfile = run_dir / ("haproxy.pid" if engine == "haproxy" else "engine.pid")
    pid = int(pidfile.read_text().split()[0])
    return children(pid)


async def proxied(engine: str, mode: str, workers: int, nginxes: list[Nginx], state: Path) -> tuple[Any, int, list[int]]:
    port = free_port()
    spec = LbSpec(listen=f"127.0.0.1:{port}", mode=mode, engine=engine, workers=workers, drain_timeout="2s")
    plane = make_data_plane(f"{engine}-{mode}-{workers}", spec, HealthSpec(type="http", interval="200ms"), state)
    await plane.ensure_running()
    await plane.set_backends([Backend(f"nginx{i}", "127.0.0.1", n.port) for i, n in enumerate(nginxes)])
    run_dir = state / "lb" / f"{engine}-{mode}-{workers}"
    return plane, port, engine_pids(run_dir.resolve(), engine)


async def kill_run(engine: str, root: Path, state: Path, args: argparse.Namespace) -> dict[str, Any]:
    pair = [Nginx(root, f"kill-{engine}-a"), Nginx(root, f"kill-{engine}-b")]
    plane, port, _ = await proxied(engine, "http", 2, pair, state)
    try:
        await wrk(port, 1, args.connections)
        run = asyncio.create_task(wrk(port, args.duration, args.connections))
        await asyncio.sleep(args.duration / 3)  # benchmark pacing, not a test wait
        pair[1].kill9()
        result = parse_wrk(await run)
        stats = await plane.stats()
        retries = stats["listeners"][stats["listen"]]["retries"]
    finally:
        await plane.stop()
        for n in pair:
            n.stop()
    print(f"kill -9  {engine:8} {result['requests']} requests, {result['errors']} failed, {retries} retried", flush=True)
    return {"engine": engine, "requests": result["requests"], "failed": result["errors"], "retries": retries}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/bootstrap installs it)")
    runs: list[Run] = []
    kills: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.mkdir(parents=True)
            root = args.keep.resolve()
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lbb")))
        state = root / "state"
        nginx = Nginx(root, "nginx")
        try:
            for _ in range(args.rounds):  # interleaved, so a noisy minute hits every target alike
                if "direct" in args.targets:
                    for mode in args.modes:
                        runs.append(await measure("direct", mode, 1, nginx.port, [nginx.proc.pid], args))
                for workers in args.workers:
                    for mode in args.modes:
                        for engine in [t for t in ("haproxy", "builtin") if t in args.targets]:
                            plane, port, pids = await proxied(engine, mode, workers, [nginx], state)
                            try:
                                runs.append(await measure(engine, mode, workers, port, pids, args))
                            finally:
                                await plane.stop()
                            shutil.rmtree(state / "lb" / f"{engine}-{mode}-{workers}", ignore_errors=True)
        finally:
            nginx.stop()
        if args.kill:
            for engine in ("builtin", "haproxy"):
                kills.append(await kill_run(engine, root, state, args))
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU, {os.uname().sysname} {os.uname().release}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "duration_s": args.duration,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "connections": args.connections,
        "rounds": args.rounds,
        "runs": [asdict(r) for r in median_runs(runs)],
        "all_runs": [asdict(r) for r in runs],
        "kill": kills,
    }


def median_runs(runs: list[Run]) -> list[Run]:
    """One run per (target, mode, workers): the median of each figure over the rounds."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.target, run.mode, run.workers), []).append(run)
    merged = []
    for (target, mode, workers), group in groups.items():
        cpus = [r.cpu_us_per_req for r in group if r.cpu_us_per_req is not None]
        merged.append(Run(
            target, mode, workers,
            requests=sum(r.requests for r in group),
            seconds=sum(r.seconds for r in group),
            rps=statistics.median(r.rps for r in group),
            p50_ms=statistics.median(r.p50_ms for r in group),
            p99_ms=statistics.median(r.p99_ms for r in group),
            errors=sum(r.errors for r in group),
            cpu_us_per_req=round(statistics.median(cpus), 1) if cpus else None,
        ))
    return merged


def table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table, proxies beside HAProxy at the same mode and workers."""
    runs = result["runs"]
    haproxy = {(r["mode"], r["workers"]): r for r in runs if r["target"] == "haproxy"}
    lines = [
        f"{result['date']}, {result['machine']}, {result['rounds']} rounds of {result['duration_s']:.0f} s, "
        f"wrk -t1 -c{result['connections']}, medians; 1-min load average before/after: "
        f"{result['loadavg_before_after'][0]} / {result['loadavg_before_after'][1]}",
        "",
        "| target | mode | workers | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs HAProxy | CPU vs HAProxy | errors |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        ref = haproxy.get((r["mode"], r["workers"]))
        ratio = f"{r['rps'] / ref['rps']:.2f}" if ref and r["target"] != "haproxy" else ""
        cpu_ratio = (
            f"{r['cpu_us_per_req'] / ref['cpu_us_per_req']:.2f}"
            if ref and r["target"] == "builtin" and r["cpu_us_per_req"] and ref["cpu_us_per_req"] else ""
        )
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['workers'] if r['target'] != 'direct' else '-'} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_req'] or '-'} | {ratio} | {cpu_ratio} | {r['errors']} |"
        )
    for k in result["kill"]:
        lines.append(f"\nkill -9 of one of two nginx backends mid-run, {k['engine']}, http, 2 workers: "
                     f"{k['requests']} requests, **{k['failed']} failed**, {k['retries']} retried.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, reported as medians")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["http", "tcp"])
    parser.add_argument("--targets", nargs="+", default=["direct", "haproxy", "builtin"])
    parser.add_argument("--no-kill", dest="kill", action="store_false")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", type=Path, help="work (and leave logs) in this folder, not a temp one")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print()
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
