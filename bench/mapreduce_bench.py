"""Word count on the MapReduce example farms (issue 16): a generated corpus of a few hundred
MB counted by 1, 2 and 4 Dask workers and 1, 2 and 4 Spark workers (examples/mapreduce/,
brought up with the real `farmhand` command, the count fixed with `farmhand scale`), beside a
single plain Python process doing the same count; and, on the autoscaled Dask farm, the time
from a backlog appearing to the first added worker starting a task.

    .venv/bin/python bench/mapreduce_bench.py [--mb 300] [--engines dask,spark] [--out DIR]

Every count is checked against the plain one. Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.farmkit import free_port, wait_for  # noqa: E402
from tests.integration.mapreduce.corpus import EXAMPLES, example_farm, write_corpus  # noqa: E402

WORKERS = (1, 2, 4)


def make_corpus(folder: Path, megabytes: int) -> list[Path]:
    """A ~10 MB generated base text copied up to ``megabytes`` (the engines see distinct files)."""
    write_corpus(folder / "base", files=1, lines=200_000)
    base = (folder / "base" / "part-000.txt").read_bytes()
    paths = []
    for number in range(max(1, round(megabytes * 1e6 / len(base)))):
        path = folder / f"copy-{number:03d}.txt"
        path.write_bytes(base)
        paths.append(path)
    return paths


def plain_count(paths: list[Path]) -> tuple[Counter[str], float]:
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    for path in paths:
        with open(path) as text:
            for line in text:
                counts.update(line.split())
    return counts, time.perf_counter() - started


def fixed(text: str) -> str:
    """The example farm file with the workers' count fixed: no autoscaling, `scale` sets it."""
    text = text[: text.index("[roles.workers.autoscale]")]
    return re.sub(r"min = 1\nmax = 4\n", "count = 1\n", text)


def timed_run(command: list[str], env: dict[str, str]) -> tuple[dict[str, int], float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        started = time.perf_counter()
        result = subprocess.run([*command, "--counts", out.name], capture_output=True, text=True, env=env, timeout=3600)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{command[1]} failed:\n{result.stderr[-3000:]}")
        inside = float(re.findall(r"in ([0-9.]+)s on", result.stdout)[-1])
        print(result.stdout.strip().splitlines()[-1], f"(wall {wall:.1f}s)", flush=True)
        return json.loads(Path(out.name).read_text()), inside


def engine_rows(engine: str, folder: Path, paths: list[Path], expected: Counter[str]) -> dict[int, float]:
    ports = {"dask": {"8786": free_port(), "8787": free_port()}, "spark": {"7077": free_port(), "8080": free_port()}}[engine]
    farm = example_farm(folder / engine, f"{engine}.toml", ports)
    farm.file.write_text(fixed(farm.file.read_text()))
    files = [str(p) for p in paths]
    times: dict[int, float] = {}
    try:
        farm.up()
        for count in WORKERS:
            farm.cli("scale", "workers", str(count))
            if engine == "dask":
                address = f"tcp://127.0.0.1:{ports['8786']}"
                from distributed import Client

                with Client(address, timeout=60) as client:
                    wait_for(lambda n=count: len(client.scheduler_info()["workers"]) == n, 300, f"{count} Dask workers")
                command = [sys.executable, str(EXAMPLES / "wordcount.py"), address, *files, "--blocksize", "32MiB"]
            else:
                url = f"http://127.0.0.1:{ports['8080']}/json/"
                wait_for(lambda n=count, u=url: httpx.get(u, trust_env=False).json()["aliveworkers"] == n, 300,
                         f"{count} Spark workers")
                command = [sys.executable, str(EXAMPLES / "wordcount_spark.py"), f"spark://127.0.0.1:{ports['7077']}", *files]
            counts, seconds = timed_run(command, farm.env)
            assert counts == dict(expected), f"{engine} on {count} workers counted differently"
            times[count] = seconds
    finally:
        farm.cleanup()
    return times


def slow_task(number: int) -> tuple[str, float]:
    from distributed import get_worker

    started = time.time()
    time.sleep(0.5)
    return str(get_worker().name), started


def dask_reaction(folder: Path) -> float:
    """Seconds from submitting a backlog to an idle autoscaled farm (one worker) until a task
    starts on a worker the autoscaler added."""
    ports = {"8786": free_port(), "8787": free_port()}
    farm = example_farm(folder / "dask-auto", "dask.toml", ports)
    try:
        farm.up()
        from distributed import Client, as_completed

        with Client(f"tcp://127.0.0.1:{ports['8786']}", timeout=60) as client:
            wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 300, "one Dask worker")
            first = {w["name"] for w in client.scheduler_info()["workers"].values()}
            submitted = time.time()
            futures = client.map(slow_task, range(120), pure=False)
            starts = [start for name, start in (f.result() for f in as_completed(futures)) if name not in first]
            if not starts:
                raise SystemExit("no added worker ran a task")
            return float(min(starts) - submitted)
    finally:
        farm.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="corpus size in MB")
    parser.add_argument("--engines", default="dask,spark")
    parser.add_argument("--reactions", type=int, default=3, help="backlog reaction runs (Dask)")
    parser.add_argument("--out", type=Path, default=None, help="keep the work folder here")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="mapreduce-bench-"))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    paths = make_corpus(folder / "corpus", args.mb)
    size = sum(p.stat().st_size for p in paths) / 1e6
    expected, plain = plain_count(paths)
    print(f"corpus {size:.0f} MB in {len(paths)} files, {sum(expected.values()):,} words; plain Python {plain:.1f}s", flush=True)
    rows: dict[str, dict[int, float]] = {}
    for engine in args.engines.split(","):
        rows[engine] = engine_rows(engine, folder, paths, expected)
    reactions = [dask_reaction(folder) for _ in range(args.reactions)] if "dask" in args.engines else []
    print(f"\nMachine: {os.cpu_count()} CPU, Python {platform.python_version()}; corpus {size:.0f} MB, "
          f"{sum(expected.values()):,} words\n")
    print("| | 1 worker | 2 workers | 4 workers |\n| --- | --- | --- | --- |")
    print(f"| plain Python, one process | {plain:.1f} s | | |")
    for engine, times in rows.items():
        print(f"| {engine} | " + " | ".join(f"{times[n]:.1f} s" for n in WORKERS) + " |")
    if reactions:
        print("\nbacklog to first task on an added Dask worker: " + ", ".join(f"{r:.1f} s" for r in reactions))


if __name__ == "__main__":
    main()
