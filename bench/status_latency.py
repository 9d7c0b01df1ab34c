"""`farmhand status --json` at size: a fake farm brought up by the real command, then timed.

    .venv/bin/python bench/status_latency.py [--nodes 10000] [--per-host 10] [--runs 10]

Starts ``--nodes`` fake nodes on ``--nodes / --per-host`` fake hosts with `farmhand up
--detach` (which returns once every node is healthy: the time it takes is printed, a
placement-and-health throughput through the whole product), then times `farmhand status
--json` (the default: at most 1,000 nodes listed, the rest counted) and `GET
/api/status?nodes=all` (every node), median of ``--runs``; also the controller's RSS and CPU
at rest over 10 s. Then `farmhand down`. Nothing but loopback is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psutil

FARMHAND = [sys.executable, "-m", "farmhand"]


def farm_toml(nodes: int, per_host: int) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "status-bench"

        [hosts.sim]
        driver = "fake"
        count = {-(-nodes // per_host)}
        capacity = {{ nodes = {per_host} }}

        [roles.web]
        command = "app --port {{port}}"
        count = {nodes}
        health = {{ type = "http", path = "/health", interval = "1s" }}
        """)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--per-host", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fh-status-") as folder:
        farm = Path(folder) / "farm.toml"
        farm.write_text(farm_toml(args.nodes, args.per_host))
        began = time.monotonic()
        subprocess.run([*FARMHAND, "up", "--detach", "--timeout", "900", str(farm)], check=True,
                       stdout=subprocess.DEVNULL, cwd=folder)
        up = time.monotonic() - began
        try:
            api = json.loads((Path(folder) / ".farmhand" / "api.json").read_text())
            controller = psutil.Process(int(api["pid"]))
            controller.cpu_percent(None)
            time.sleep(10)
            rest_cpu = controller.cpu_percent(None)
            rss = controller.memory_info().rss / 2**20
            cli, full = [], []
            for _ in range(args.runs):
                start = time.monotonic()
                out = subprocess.run([*FARMHAND, "status", "--json"], check=True, capture_output=True, cwd=folder)
                cli.append(time.monotonic() - start)
                start = time.monotonic()
                answer = httpx.get(api["url"] + "/api/status", params={"nodes": "all"}, timeout=60, trust_env=False)
                full.append(time.monotonic() - start)
            listed = len(json.loads(out.stdout)["nodes"])
            print(f"nodes {args.nodes} on {-(-args.nodes // args.per_host)} fake hosts")
            print(f"up --detach to all healthy: {up:.1f} s ({args.nodes / up:.0f} nodes/s)")
            print(f"controller at rest: {rest_cpu:.0f}% of a core, RSS {rss:.0f} MiB")
            print(f"farmhand status --json: median {statistics.median(cli) * 1000:.0f} ms "
                  f"({listed} nodes listed, {len(out.stdout) / 1024:.0f} KiB)")
            print(f"GET /api/status?nodes=all: median {statistics.median(full) * 1000:.0f} ms "
                  f"({len(answer.content) / 2**20:.1f} MiB)")
        finally:
            subprocess.run([*FARMHAND, "down", "--timeout", "300"], cwd=folder, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
