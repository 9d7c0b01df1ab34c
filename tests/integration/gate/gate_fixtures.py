"""Real peers for the gate's tests (conftest.py re-exports the fixtures): a DNS server on
loopback with chosen records, tcpserver chains, and helpers that wait on conditions with deadlines.

The DNS server listens on port 53 of a random 127.53.x.y address, because tcpserver (like
every djbdns-based tool) reaches ``$DNSCACHEIP`` on port 53 only. Clients pick their class by
their source address inside 127.0.0.0/8:

    127.0.0.21  mx1.generaldynamics.test, resolves back        -> static
    127.0.0.22  dsl-127-0-0-22.pool.isp.test, resolves back    -> dynamic
    127.0.0.23  forged.example.test, which resolves elsewhere  -> mismatch
    127.0.0.24  no PTR (NXDOMAIN)                              -> no_ptr
    127.0.0.25  SERVFAIL                                       -> mismatch (DNS failure)
    127.0.0.1   mx.polite.test (static), ::1 mx6.polite.test (static)
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

HERE = Path(__file__).parent
CLIENT = {
    "static": "127.0.0.21",
    "dynamic": "127.0.0.22",
    "mismatch": "127.0.0.23",
    "no_ptr": "127.0.0.24",
    "servfail": "127.0.0.25",
}
PTRS = {
    "21.0.0.127.in-addr.arpa": "mx1.generaldynamics.test",
    "22.0.0.127.in-addr.arpa": "dsl-127-0-0-22.pool.isp.test",
    "23.0.0.127.in-addr.arpa": "forged.example.test",
    "1.0.0.127.in-addr.arpa": "mx.polite.test",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa": "mx6.polite.test",
}
ADDRESSES = {
    "mx1.generaldynamics.test": ["127.0.0.21"],
    "dsl-127-0-0-22.pool.isp.test": ["127.0.0.22"],
    "forged.example.test": ["127.0.0.99"],
    "mx.polite.test": ["127.0.0.1"],
    "mx6.polite.test": ["::1"],
}
SERVFAIL = {"25.0.0.127.in-addr.arpa"}
QUIET = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from the tables above; anything else is NXDOMAIN."""

    def __init__(self) -> None:
        self.queries = 0

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        self.queries += 1
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if name in SERVFAIL:
            reply.header.rcode = RCODE.SERVFAIL
        elif qtype == "PTR" and name in PTRS:
            reply.add_answer(RR(name, QTYPE.PTR, rdata=PTR(PTRS[name] + "."), ttl=60))
        elif qtype in ("A", "AAAA") and name in ADDRESSES:
            for address in ADDRESSES[name]:
                if qtype == "A" and "." in address:
                    reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=60))
                elif qtype == "AAAA" and ":" in address:
                    reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=60))
        elif name not in PTRS and name not in ADDRESSES:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@dataclass
class Dns:
    ip: str
    port: int
    resolver: ZoneResolver


@pytest.fixture(scope="session")
def dns_server() -> Iterator[Dns]:
    resolver = ZoneResolver()
    server = None
    for _ in range(20):
        ip = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        try:
            server = DNSServer(resolver, address=ip, port=53, logger=QUIET)
            break
        except PermissionError:
            pytest.skip("binding port 53 on loopback needs root (tcpserver only asks port 53)")
        except OSError:
            continue
    assert server is not None, "no free 127.53.x.y:53 for the test DNS server"
    server.start_thread()
    try:
        yield Dns(ip, 53, resolver)
    finally:
        server.stop()
        server.server.server_close()


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Chain:
    """A running ``tcpserver ... smtp-delay ... sink`` chain."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path
    sink: Path
    started: list[float] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def verdict_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "smtp-delay: pid=" in line]

    def runs(self) -> list[Path]:
        return sorted(self.sink.glob("ran-*"))

    def mails(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted(self.sink.glob("mail-*"))]

    def wait_for_verdicts(self, count: int) -> list[str]:
        wait_until(lambda: len(self.verdict_lines()) >= count, what=f"{count} smtp-delay log lines")
        return self.verdict_lines()

    def wait_for_ends(self, count: int) -> None:
        """tcpserver -v logs "end PID status" when a connection's program exits."""
        wait_until(lambda: self.log_text().count("tcpserver: end ") >= count, what=f"{count} ended connections")


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture
def sink_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sink") as folder:
        yield Path(folder)


@pytest.fixture
def start_chain(dns_server: Dns, sink_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """Start ``tcpserver -p -R -v -1 HOST 0 smtp-delay OPTIONS [rblsmtpd] sink``."""
    chains: list[Chain] = []

    def start(options: list[str], host: str = "127.0.0.1", rblsmtpd: bool = True,
              extra_env: dict[str, str] | None = None) -> Chain:
        log = tmp_path / f"chain-{len(chains)}.log"
        env = {**os.environ, "DNSCACHEIP": dns_server.ip, "SINK_DIR": str(sink_dir), **(extra_env or {})}
        argv = ["tcpserver", "-1", "-v", "-p", "-R", "-l", "gate.test", "-c", "200", host, "0",
                venv_bin("smtp-delay"), "-v", *options]
        if rblsmtpd:
            argv.append("rblsmtpd")
        argv += [sys.executable, str(HERE / "smtp_sink.py")]
        with open(log, "wb") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                       start_new_session=True)
        chain = Chain(process, host, 0, log, sink_dir)
        chains.append(chain)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"tcpserver did not start: {line!r} {log.read_text()}"
        chain.port = int(line)
        return chain

    try:
        yield start
    finally:
        for chain in chains:
            stop_group(chain.process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process and its whole session (tcpserver's children too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    for stream in (process.stdout, process.stderr, process.stdin):
        if stream is not None:
            stream.close()
