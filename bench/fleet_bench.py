"""`uname -a` on many test hosts: farmhand exec cold (fresh connections, no controller),
farmhand exec warm (through a running controller's open connections), clush (ClusterShell's
own command) and parallel-ssh (Debian's pssh). Wall time and client CPU (this process's
children: the tool and every ssh it starts), median of N rounds; figures for bench/RESULTS.md.
Cold farmhand runs twice: with its worker processes (one per core, ``fleet.workers``) and as
one process (``FARMHAND_EXEC_WORKERS=1``), to compare the two in the same conditions.

Every tool uses the same client key (the run's ed25519 key), the same pinned known_hosts,
no ~/.ssh/config, and the test hosts' login user (shell /bin/sh, empty rc files). Key
exchange: farmhand (asyncssh) uses curve25519-sha256; clush and pssh run OpenSSH's ssh, once
with curve25519-sha256 forced and once with OpenSSH's default (post-quantum first).

Run as root (test hosts are network namespaces): `.venv/bin/python bench/fleet_bench.py --hosts 50`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testhosts_net import create_run  # noqa: E402

FARMHAND = str(ROOT / ".venv" / "bin" / "farmhand")
CURVE = "curve25519-sha256"
TOOL_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
"""The tools run with Python's bytecode caches written and read, as installed programs have
them (Debian compiles clush's at install): with PYTHONDONTWRITEBYTECODE set in the shell,
farmhand's own modules, edited since their last cache, were compiled again at every start
(~0.25 s of CPU per run)."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], cwd: Path, expect: int, rounds: int,
            env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median wall seconds and median client CPU seconds of ``rounds`` runs of ``argv``."""
    walls, cpus = [], []
    env = {**TOOL_ENV, **(env or {})}
    subprocess.run(argv, cwd=cwd, capture_output=True, timeout=300, env=env)  # caches warm, not timed
    for _ in range(rounds):
        cpu_before, started = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu_before)
        answered = sum(1 for line in done.stdout.splitlines() if "Linux" in line)
        if done.returncode != 0 or answered < 1:
            raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
        if "-b" not in argv and "--json" not in argv and answered != expect:
            raise SystemExit(f"{argv[0]}: {answered} answers, not {expect}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
    run = create_run(args.hosts)
    folder = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    up = False
    try:
        (folder / "farm.toml").write_text(run.farm_toml())
        addresses = ",".join(h.address for h in run.hosts)
        (folder / "hosts.txt").write_text("\n".join(h.address for h in run.hosts) + "\n")
        target = f"h[1-{args.hosts}]"
        ssh_options = ["-F", "/dev/null", "-i", str(run.key_file), "-o", "IdentitiesOnly=yes",
                       "-o", f"UserKnownHostsFile={run.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                       "-o", "BatchMode=yes"]
        user = run.hosts[0].user
        rows: list[tuple[str, str, float, float]] = []

        def bench(name: str, kex: str, argv: list[str], expect: int = args.hosts,
                  env: dict[str, str] | None = None) -> None:
            wall, cpu = measure(argv, folder, expect, args.rounds, env)
            rows.append((name, kex, wall, cpu))
            print(f"{name:<44} {kex:<28} wall {wall:6.3f} s  cpu {cpu:6.3f} s", flush=True)

        cold = [FARMHAND, "exec", target, "--direct", "--", "uname", "-a"]
        bench("farmhand exec (cold, no controller)", "curve25519-sha256 (asyncssh)", cold)
        bench("farmhand exec (cold, one process)", "curve25519-sha256 (asyncssh)", cold,
              env={"FARMHAND_EXEC_WORKERS": "1"})
        for kex, extra in ((CURVE, ["-o", f"KexAlgorithms={CURVE}"]), ("OpenSSH default", [])):
            options = " ".join([*ssh_options, *extra])
            if shutil.which("clush"):
                bench("clush -b", kex, ["clush", "-w", addresses, "-l", user, "-f", "64", "-b", "-o", options,
                                        "uname", "-a"])
            if shutil.which("parallel-ssh"):
                bench("parallel-ssh -i", kex, ["parallel-ssh", "-h", "hosts.txt", "-l", user, "-p", "64",
                                               "-i", "-x", options, "uname", "-a"])
        subprocess.run([FARMHAND, "up", "--detach", "farm.toml", "--timeout", "120"], cwd=folder, check=True,
                       capture_output=True, env=TOOL_ENV)
        up = True
        warm = [FARMHAND, "exec", target, "--", "uname", "-a"]
        subprocess.run(warm, cwd=folder, check=True, capture_output=True, env=TOOL_ENV)  # every host connected
        bench("farmhand exec (warm, through the controller)", "curve25519-sha256 (open)", warm)
        rounds = _api_rounds(folder, target, args.rounds)
        print(f"{'  one API round (no CLI start-up)':<44} {'':<28} wall {rounds:6.3f} s", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)
        print(json.dumps({"hosts": args.hosts, "rounds": args.rounds, "api_round": rounds,
                          "rows": [dict(zip(("tool", "kex", "wall", "cpu"), r, strict=True)) for r in rows]}))
    finally:
        if up:
            subprocess.run([FARMHAND, "down"], cwd=folder, capture_output=True, timeout=120)
        run.close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _api_rounds(folder: Path, target: str, rounds: int) -> float:
    """Median time of POST /api/fleet/exec alone, from this process (the CLI's start-up aside)."""
    import httpx

    sys.path.insert(0, str(ROOT / "src"))
    from farmhand.store.statedir import StateDir

    state = StateDir.beside(folder / "farm.toml")
    url, token = state.read_api()["url"], state.read_token()
    times: list[float] = []
    with httpx.Client(trust_env=False, timeout=60) as client:
        post: Callable[[], httpx.Response] = lambda: client.post(  # noqa: E731
            f"{url}/api/fleet/exec", json={"target": target, "command": "uname -a"},
            headers={"Authorization": f"Bearer {token}"})
        post()
        for _ in range(rounds):
            started = time.perf_counter()
            answer = post()
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
