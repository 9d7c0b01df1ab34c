"""How long the `farmhand` command takes to answer, beside `python -c pass` on the same machine.

    .venv/bin/python bench/cli_speed.py [--runs 20] [--json]

Each command is run ``--runs`` times, alternating with the baseline so that the machine's
load weighs on both alike; the figure is the median wall time of the whole process (start,
imports, the API round trip, rendering, exit). `status` runs against a real farm of three
demo nodes started in a temporary folder, stopped and removed at the end (even on failure).
Targets (issue 11): `farmhand --help` under 150 ms, `farmhand status` under 250 ms.
Everything is loopback; nothing outlives the run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FARMHAND = str(Path(sys.executable).parent / "farmhand")
FARM = textwrap.dedent("""\
    [farm]
    name = "bench"

    [roles.web]
    command = "python3 app.py --port {port} --node {node}"
    count = 3

    [roles.web.health]
    path = "/health"
    interval = "1s"
    """)
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "farmhand --version": [FARMHAND, "--version"],
    "farmhand --help": [FARMHAND, "--help"],
    "farmhand status": [FARMHAND, "status"],
    "farmhand status --json": [FARMHAND, "status", "--json"],
    "farmhand events -n 20": [FARMHAND, "events", "-n", "20"],
}
TARGETS_MS = {"farmhand --help": 150, "farmhand status": 250}


def wall_time(argv: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def measure(runs: int, folder: Path) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name in COMMANDS:  # one warm-up each: file-system caches, .pyc files
        wall_time(COMMANDS[name], folder)
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(wall_time(argv, folder))
    return {name: {"median_ms": round(statistics.median(values) * 1000, 1),
                   "min_ms": round(min(values) * 1000, 1),
                   "p90_ms": round(sorted(values)[int(0.9 * (len(values) - 1))] * 1000, 1)}
            for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="One JSON object instead of a table.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="farmhand-cli-bench-"))
    try:
        shutil.copy(REPO / "examples" / "app.py", folder / "app.py")
        (folder / "farm.toml").write_text(FARM)
        subprocess.run([FARMHAND, "up", "--detach", "--timeout", "60"], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
        results = measure(args.runs, folder)
    finally:
        subprocess.run([FARMHAND, "down", "--timeout", "30"], cwd=folder, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)
    report = {"machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
                         f"Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['machine']}, {report['date']}, median of {args.runs} runs")
    print(f"{'command':<24} {'median':>9} {'min':>9} {'p90':>9}  target")
    for name, figures in results.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else f"< {target} ms: {'met' if figures['median_ms'] < target else 'MISSED'}"
        print(f"{name:<24} {figures['median_ms']:>6.1f} ms {figures['min_ms']:>6.1f} ms {figures['p90_ms']:>6.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
