"""How long the `farmhand` command takes to answer, beside `python -c pass` on the same machine.

    .venv/bin/python bench/cli_speed.py [--runs 20] [--json] [--farmhand "COMMAND"]

Each command is run ``--runs`` times, alternating with the baseline so that the machine's
load weighs on both alike; the figure is the median wall time of the whole process (start,
imports, the API round trip, rendering, exit). `status` runs against a real farm of three
demo nodes started in a temporary folder, stopped and removed at the end (even on failure).
Targets (issue 11): `farmhand --help` under 150 ms, `farmhand status` under 250 ms.
``--farmhand`` measures another build, e.g. an older commit checked out in /tmp/old:
``--farmhand "env PYTHONPATH=/tmp/old/src .venv/bin/python -m farmhand"``.
Everything is loopback; nothing outlives the run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FARMHAND = [str(Path(sys.executable).parent / "farmhand")]
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
    "farmhand --version": ["--version"],
    "farmhand --help": ["--help"],
    "farmhand status": ["status"],
    "farmhand status --json": ["status", "--json"],
    "farmhand events -n 20": ["events", "-n", "20"],
}
TARGETS_MS = {"farmhand --help": 150, "farmhand status": 250}


def wall_time(argv: list[str], cwd: Path) -> float | None:
    """Seconds from start to exit, or None when the command failed (an older build may
    lack a verb: it is left out rather than timed)."""
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began if done.returncode == 0 else None


def measure(runs: int, folder: Path, farmhand: list[str]) -> dict[str, dict[str, float]]:
    commands = {name: argv if name.startswith("python") else farmhand + argv for name, argv in COMMANDS.items()}
    # one warm-up each (file-system caches, .pyc files), which also drops what fails
    commands = {name: argv for name, argv in commands.items() if wall_time(argv, folder) is not None}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            seconds = wall_time(argv, folder)
            if seconds is None:
                raise SystemExit(f"{shlex.join(argv)} failed during the run")
            samples[name].append(seconds)
    return {name: {"median_ms": round(statistics.median(values) * 1000, 1),
                   "min_ms": round(min(values) * 1000, 1),
                   "p90_ms": round(sorted(values)[int(0.9 * (len(values) - 1))] * 1000, 1)}
            for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="One JSON object instead of a table.")
    parser.add_argument("--farmhand", default=shlex.join(FARMHAND), help="The command to measure.")
    args = parser.parse_args()
    farmhand = shlex.split(args.farmhand)
    folder = Path(tempfile.mkdtemp(prefix="farmhand-cli-bench-"))
    try:
        shutil.copy(REPO / "examples" / "app.py", folder / "app.py")
        (folder / "farm.toml").write_text(FARM)
        subprocess.run([*farmhand, "up", "--detach", "--timeout", "60"], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
        results = measure(args.runs, folder, farmhand)
    finally:
        subprocess.run([*farmhand, "down", "--timeout", "30"], cwd=folder, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)
    report = {"machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
                         f"Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "farmhand": args.farmhand,
              "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['machine']}, {report['date']}, median of {args.runs} runs; farmhand = {args.farmhand}")
    print(f"{'command':<24} {'median':>9} {'min':>9} {'p90':>9}  target")
    for name, figures in results.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else f"< {target} ms: {'met' if figures['median_ms'] < target else 'MISSED'}"
        print(f"{name:<24} {figures['median_ms']:>6.1f} ms {figures['min_ms']:>6.1f} ms {figures['p90_ms']:>6.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
