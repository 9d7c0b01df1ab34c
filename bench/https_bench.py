"""HTTPS benchmark: the builtin engine beside HAProxy, same certificate, same backend (issue 15).

    .venv/bin/python bench/https_bench.py [--rounds 8] [--duration 3] [--connections 50]
                                          [--handshake-clients 2] [--workers 1] [--json out.json]

Everything runs on this machine, on loopback: one single-process nginx (lb_bench's) behind
each proxy, ``--workers`` workers per proxy (the builtin engine's processes, HAProxy's
``nbthread``: the same cores for both), started through farmhand's ``make_data_plane``
with an HTTPS listener on one ECDSA P-256 certificate (made here with ``cryptography``). Both
proxies run for the whole benchmark (idle while the other is measured); each round measures
one figure on one engine right after the same figure on the other, in alternating order, so
a busy moment on a shared machine hits both alike, and the ratio is taken per round (its
median over the rounds is the result):

- requests/s on kept-alive connections: ``wrk -t1 -cN https://...`` (one handshake per
  connection, then requests);
- new connections/s: ``openssl s_time -new -www /`` from a few clients at once (a full
  handshake, no resumption, then one HTTP/1.0 request per connection).

The proxy's CPU (utime+stime of its processes from /proc) per request or per connection is
reported too: the steadier figure when other work shares the cores. The summary names the TLS
the builtin engine ran on; to compare two trees, run the script with ``PYTHONPATH`` pointing
at each tree's ``src`` in turn (interleaved, several times: the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lb_bench import TICKS, Nginx, children, cpu_ticks, free_port, parse_wrk  # noqa: E402

from farmhand.dataplane import Backend  # noqa: E402
from farmhand.lb import make_data_plane  # noqa: E402
from farmhand.spec.models import HealthSpec, LbSpec  # noqa: E402

ENGINES = ("haproxy", "builtin")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for bench.test and 127.0.0.1 (both engines serve it)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.test"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "bench.crt", folder / "bench.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


async def start_proxy(engine: str, nginx: Nginx, state: Path, cert: Path, key: Path,
                      workers: int = 1) -> tuple[Any, int, list[int]]:
    port, tls_port = free_port(), free_port()
    spec = LbSpec.model_validate({
        "listen": f"127.0.0.1:{port}", "engine": engine, "workers": workers, "drain_timeout": "2s",
        "tls": {"listen": f"127.0.0.1:{tls_port}", "cert": str(cert), "key": str(key)},
    })
    plane = make_data_plane(f"https-{engine}", spec, HealthSpec.model_validate({"type": "http", "interval": "200ms"}), state)
    await plane.ensure_running()
    await plane.set_backends([Backend("nginx", "127.0.0.1", nginx.port)])
    run_dir = (state / "lb" / f"https-{engine}").resolve()
    pidfile = run_dir / ("haproxy.pid" if engine == "haproxy" else "engine.pid")
    pids = children(int(pidfile.read_text().split()[0]))
    return plane, tls_port, pids


async def run(*command: str) -> str:
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


async def keepalive_rps(port: int, pids: list[int], args: argparse.Namespace) -> dict[str, float]:
    url = f"https://127.0.0.1:{port}/"
    before = cpu_ticks(pids)
    result = parse_wrk(await run("wrk", "-t1", f"-c{args.connections}", f"-d{round(args.duration)}s", "--latency", url))
    used = cpu_ticks(pids) - before
    return {"rps": result["rps"], "p99_ms": result["p99_ms"], "errors": result["errors"],
            "cpu_us": round(used / TICKS / max(1, result["requests"]) * 1e6, 1)}


async def handshakes(port: int, pids: list[int], args: argparse.Namespace) -> dict[str, float]:
    """``args.handshake_clients`` s_time clients at once; connections/s summed over them."""
    seconds = max(1, round(args.duration))
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-www", "/", "-time", str(seconds)]
    before = cpu_ticks(pids)
    started = time.monotonic()
    outs = await asyncio.gather(*(run(*command) for _ in range(args.handshake_clients)))
    wall = time.monotonic() - started
    used = cpu_ticks(pids) - before
    total = 0
    for out in outs:
        done = re.search(r"(\d+) connections in ([\d.]+)s;", out) or re.search(r"(\d+) connections in (\d+) real", out)
        if not done:
            raise RuntimeError(f"openssl s_time said:\n{out}")
        total += int(done.group(1))
    rate = total / seconds
    return {"hps": round(rate, 1), "connections": total, "wall_s": round(wall, 2),
            "cpu_us": round(used / TICKS / max(1, total) * 1e6, 1)}


def builtin_tls_path() -> str:
    """Which TLS the builtin engine's HTTPS listener runs on (the engine imports the same
    ``farmhand`` as this script, so a ``PYTHONPATH`` pointing at an older tree shows here)."""
    try:
        from farmhand.lb.builtin import tls_transport
    except ImportError:
        return "event loop's TLS (uvloop sslproto)"
    return "own transport (lb/builtin/tls_transport.py)" if tls_transport.supported() else "event loop's TLS (fallback)"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("wrk", "nginx", "haproxy", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/bootstrap installs it)")
    load_before = os.getloadavg()
    loads: list[float] = []
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="httpsb") as tmp:
        root = Path(tmp)
        cert, key = make_certificate(root)
        state = root / "state"
        nginx = Nginx(root, "nginx")
        proxies: dict[str, tuple[Any, int, list[int]]] = {}
        try:
            for engine in ENGINES:
                proxies[engine] = await start_proxy(engine, nginx, state, cert, key, args.workers)
                _, port, _ = proxies[engine]
                await run("wrk", "-t1", f"-c{args.connections}", "-d1s", f"https://127.0.0.1:{port}/")  # warm up
            for number in range(args.rounds):
                order = ENGINES if number % 2 == 0 else ENGINES[::-1]  # neither always goes first
                figures: dict[str, Any] = {engine: {} for engine in ENGINES}
                for part, measure in (("keepalive", keepalive_rps), ("handshakes", handshakes)):
                    for engine in order:  # one engine right after the other, figure by figure
                        _, port, pids = proxies[engine]
                        figures[engine][part] = await measure(port, pids, args)
                for engine in ENGINES:
                    print(f"round {number + 1} {engine:8} {figures[engine]['keepalive']['rps']:9.0f} req/s "
                          f"(cpu {figures[engine]['keepalive']['cpu_us']} us/req, errors "
                          f"{figures[engine]['keepalive']['errors']})  {figures[engine]['handshakes']['hps']:8.1f} "
                          f"new conn/s (cpu {figures[engine]['handshakes']['cpu_us']} us/conn)", flush=True)
                rounds.append(figures)
                loads.append(os.getloadavg()[0])
        finally:
            for plane, _, _ in proxies.values():
                await plane.stop()
            nginx.stop()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} vCPU, {os.uname().sysname} {os.uname().release}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "loadavg_rounds": [round(x, 2) for x in loads],
        "workers": args.workers,
        "builtin_tls": builtin_tls_path(),
        "duration_s": args.duration, "connections": args.connections, "handshake_clients": args.handshake_clients,
        "rounds": rounds,
    }


def summary(result: dict[str, Any]) -> str:
    """Medians over the rounds and the builtin/HAProxy ratio of each round (then its median)."""
    rounds = result["rounds"]

    def med(engine: str, part: str, figure: str) -> float:
        return float(statistics.median(r[engine][part][figure] for r in rounds))

    def ratios(part: str, figure: str) -> list[float]:
        return [r["builtin"][part][figure] / r["haproxy"][part][figure] for r in rounds]

    rps, hps = ratios("keepalive", "rps"), ratios("handshakes", "hps")
    cpu_req, cpu_conn = ratios("keepalive", "cpu_us"), ratios("handshakes", "cpu_us")

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    loads = result.get("loadavg_rounds") or result["loadavg_before_after"]
    lines = [
        f"{result['date']}, {result['machine']}, {len(rounds)} rounds of {result['duration_s']:.0f} s per figure, "
        f"engines interleaved, {result.get('workers', 1)} worker(s) / thread(s) each, builtin on "
        f"{result.get('builtin_tls', '?')}; 1-min load average "
        f"before/after: {result['loadavg_before_after'][0]} / {result['loadavg_before_after'][1]}, "
        f"over the rounds {min(loads)}–{max(loads)}",
        f"`{result['command']}`",
        "",
        "| figure | HAProxy | builtin | builtin / HAProxy: median of rounds (min–max) | per round | target |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        f"| kept-alive req/s (wrk -t1 -c{result['connections']}) | {med('haproxy', 'keepalive', 'rps'):.0f} "
        f"| {med('builtin', 'keepalive', 'rps'):.0f} | {spread(rps)} "
        f"| {', '.join(f'{x:.2f}' for x in rps)} | 0.80 |",
        f"| new TLS connections/s (s_time -new x{result['handshake_clients']}) | {med('haproxy', 'handshakes', 'hps'):.0f} "
        f"| {med('builtin', 'handshakes', 'hps'):.0f} | {spread(hps)} "
        f"| {', '.join(f'{x:.2f}' for x in hps)} | 0.90 |",
        f"| proxy CPU µs per kept-alive request | {med('haproxy', 'keepalive', 'cpu_us'):.1f} "
        f"| {med('builtin', 'keepalive', 'cpu_us'):.1f} | {spread(cpu_req)} | | |",
        f"| proxy CPU µs per new connection | {med('haproxy', 'handshakes', 'cpu_us'):.0f} "
        f"| {med('builtin', 'handshakes', 'cpu_us'):.0f} | {spread(cpu_conn)} | | |",
        f"| failed requests (wrk) | {sum(r['haproxy']['keepalive']['errors'] for r in rounds)} "
        f"| {sum(r['builtin']['keepalive']['errors'] for r in rounds)} | | | |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per figure per engine per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--handshake-clients", type=int, default=2, help="openssl s_time processes at once")
    parser.add_argument("--workers", type=int, default=1, help="builtin workers and HAProxy threads (the same for both)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print()
    print(summary(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
