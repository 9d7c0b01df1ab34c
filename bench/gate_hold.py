"""Hold many SMTP clients in their greet delay: the farmhand gate versus tcpserver + smtp-delay.

    .venv/bin/python bench/gate_hold.py [--gate-clients 10000] [--chain-clients 1000]

Loopback only. A DNS server on 127.53.x.y:53 (dnslib, in a thread) gives every client a
PTR name that resolves back, so both contenders do their normal lookups (tcpserver sets
TCPREMOTEHOST; the gate does PTR + A). Clients connect from 100 addresses in 127.0.1.0/24 and
say nothing; every delay (200 s) is longer than the run, so all of them are held at once. Measured:
accept rate (connections accepted per second, from the first connect until the contender has
them all), and memory while all are held: the gate's RSS, and for tcpserver the sum over it
and its smtp-delay processes (RSS, which counts shared pages once per process, and PSS, which
splits them). Everything stops by itself: each phase has a deadline, and every client,
process and socket is closed at the end. Needs root (port 53) and ucspi-tcp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from dnslib import PTR, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from farmhand.gate.dataplane import GateDataPlane
from farmhand.spec.models import LbSpec

SOURCES = [f"127.0.1.{n}" for n in range(1, 101)]
PHASE_DEADLINE = 240.0
DELAY = 200
"""Seconds every client is held: longer than it takes to start 1,000 Python processes on 2 vCPU."""


class BenchZone(BaseResolver):  # type: ignore[misc]
    """127.0.1.N <-> client-N.bench.test; anything else NXDOMAIN."""

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if qtype == "PTR" and name.endswith(".1.0.127.in-addr.arpa"):
            reply.add_answer(RR(name, QTYPE.PTR, rdata=PTR(f"client-{name.split('.')[0]}.bench.test."), ttl=300))
        elif qtype == "A" and name.startswith("client-") and name.endswith(".bench.test"):
            reply.add_answer(RR(name, QTYPE.A, rdata=A(f"127.0.1.{name[7:].split('.')[0]}"), ttl=300))
        elif qtype != "AAAA":
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def start_dns() -> tuple[DNSServer, str]:
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    for _ in range(20):
        ip = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        with contextlib.suppress(OSError):
            server = DNSServer(BenchZone(), address=ip, port=53, logger=quiet)
            server.start_thread()
            return server, ip
    raise SystemExit("no free 127.53.x.y:53 for the benchmark's DNS server (run as root)")


class Quiet(asyncio.Protocol):
    """A client that connects and says nothing."""


async def open_clients(host: str, port: int, count: int, at_once: int) -> list[asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(at_once)
    transports: list[asyncio.BaseTransport] = []

    async def one(n: int) -> None:
        async with slots:
            transport, _ = await loop.create_connection(Quiet, host, port, local_addr=(SOURCES[n % len(SOURCES)], 0))
            transports.append(transport)

    async with asyncio.timeout(PHASE_DEADLINE):
        await asyncio.gather(*(one(n) for n in range(count)))
    return transports


async def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def close_all(transports: list[asyncio.BaseTransport]) -> None:
    for transport in transports:
        transport.close()


async def bench_gate(dns_ip: str, count: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="fgb", dir="/tmp"))
    delay = f"{DELAY}s"
    spec = LbSpec.model_validate({
        "listen": "127.0.0.1:0", "mode": "tcp", "gate": "smtp-delay", "drain_timeout": "1s",
        "gate_options": {"static_delay": delay, "dynamic_delay": delay, "mismatch_delay": delay,
                         "no_ptr_delay": delay, "dns_server": dns_ip, "pass_cache_ttl": "0s"},
    })
    plane = GateDataPlane("bench", spec, state)
    transports: list[asyncio.BaseTransport] = []
    try:
        await plane.ensure_running()
        host, port = await plane.address()
        pid = int((await plane._call({"op": "ping"}))["pid"])
        process = psutil.Process(pid)
        idle_rss = process.memory_info().rss
        started = time.monotonic()
        transports = await open_clients(host, port, count, at_once=1000)

        async def all_held() -> bool:
            stats = await plane.stats()
            return bool(stats["held"] >= count)

        await wait_until(all_held, f"the gate to hold {count} clients")
        elapsed = time.monotonic() - started
        info = process.memory_full_info()
        stats = await plane.stats()
        return {
            "clients": count, "held": stats["held"], "seconds_to_hold_all": round(elapsed, 2),
            "accept_rate_per_s": round(count / elapsed), "rss_mb": round(info.rss / 2**20, 1),
            "uss_mb": round(info.uss / 2**20, 1), "idle_rss_mb": round(idle_rss / 2**20, 1),
            "rss_per_client_kb": round((info.rss - idle_rss) / count / 1024, 2), "dns_lookups": stats["lookups"],
        }
    finally:
        close_all(transports)
        await plane.stop()
        shutil.rmtree(state, ignore_errors=True)


async def bench_chain(dns_ip: str, count: int) -> dict[str, Any]:
    smtp_delay = str(Path(sys.executable).parent / "smtp-delay")
    argv = ["tcpserver", "-1", "-R", "-l", "bench.test", "-c", str(count + 100), "-b", "1024", "127.0.0.1", "0",
            smtp_delay, *[part for flag in ("-d", "-D", "-P", "-N") for part in (flag, str(DELAY))], "true"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,  # noqa: ASYNC220
                              env={**os.environ, "DNSCACHEIP": dns_ip})
    transports: list[asyncio.BaseTransport] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        parent = psutil.Process(server.pid)
        started = time.monotonic()
        transports = await open_clients("127.0.0.1", port, count, at_once=64)

        async def all_running() -> bool:
            return len(parent.children()) >= count

        await wait_until(all_running, f"{count} smtp-delay processes")
        # a process counts once it is past Python's start-up: wait until each has its final size
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        rss = pss = uss = 0
        for process in [parent, *parent.children()]:
            with contextlib.suppress(psutil.Error):
                info = process.memory_full_info()
                rss, pss, uss = rss + info.rss, pss + info.pss, uss + info.uss
        return {
            "clients": count, "processes": len(parent.children()) + 1,
            "seconds_to_hold_all": round(elapsed - 1.0, 2), "accept_rate_per_s": round(count / (elapsed - 1.0)),
            "rss_sum_mb": round(rss / 2**20, 1), "pss_sum_mb": round(pss / 2**20, 1),
            "uss_sum_mb": round(uss / 2**20, 1), "pss_per_client_kb": round(pss / count / 1024, 1),
        }
    finally:
        close_all(transports)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


async def main(gate_clients: int, chain_clients: int) -> dict[str, Any]:
    dns, dns_ip = start_dns()
    try:
        gate = await bench_gate(dns_ip, gate_clients) if gate_clients else None
        print(json.dumps({"gate": gate}), file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)
        chain = await bench_chain(dns_ip, chain_clients) if chain_clients else None
    finally:
        dns.stop()
        dns.server.server_close()
    return {"gate": gate, "tcpserver+smtp-delay": chain}


def raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        raise SystemExit(f"the hard open-files limit ({hard}) is below the {wanted} this run needs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate-clients", type=int, default=10_000)
    parser.add_argument("--chain-clients", type=int, default=1_000)
    args = parser.parse_args()
    raise_open_files(max(args.gate_clients, args.chain_clients) + 1000)
    import uvloop

    print(json.dumps(uvloop.run(main(args.gate_clients, args.chain_clients)), indent=2))
