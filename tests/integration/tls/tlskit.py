"""Helpers for the HTTPS tests: certificates from a test CA, TLS clients, a steady HTTPS load.

Certificates are made with trustme (a CA that exists only in the test); clients trust that
CA alone, so a certificate the balancer should not be serving fails the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
import textwrap
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trustme


def write_cert(ca: trustme.CA, folder: Path, stem: str, *names: str) -> tuple[Path, Path]:
    """A leaf for ``names`` (and 127.0.0.1) as ``stem.crt`` + ``stem.key``."""
    leaf = ca.issue_cert(*names, "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def client_context(*cas: trustme.CA, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata="".join(ca.cert_pem.bytes().decode() for ca in cas))
    if maximum is not None:  # an old client: let ours offer what the server must refuse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def handshake(port: int, context: ssl.SSLContext, sni: str) -> tuple[str, str]:
    """Connect with SNI ``sni``; (the names the server's certificate carries, TLS version)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=sni)
    try:
        peer = writer.get_extra_info("peercert")
        names = ",".join(value for kind, value in peer["subjectAltName"] if kind == "DNS")
        return names, str(writer.get_extra_info("ssl_object").version())
    finally:
        writer.close()


async def get(port: int, context: ssl.SSLContext, sni: str, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request on a new connection: (status, headers lower-cased, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=sni)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
    return parse(data)


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@dataclass
class HttpsLoad:
    """Clients sending GETs over HTTPS until stopped: half on kept-alive connections, half on
    a new connection (a new handshake) per request. Counts answers and failures and which
    certificate each new handshake saw: by its names (``seen``) and by its end of validity as a
    Unix time (``expiries``: a renewed certificate has the same names and a later end)."""

    port: int
    context: ssl.SSLContext
    sni: str
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    expiries: Counter[float] = field(default_factory=Counter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    running: bool = True

    def start(self, clients: int = 4) -> None:
        self.tasks = [asyncio.create_task(self._client(i % 2 == 0)) for i in range(clients)]

    async def _client(self, keep_alive: bool) -> None:
        while self.running:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.context, server_hostname=self.sni)
            except (OSError, ssl.SSLError) as error:
                self.failures[f"connect: {error}"] += 1
                await asyncio.sleep(0.01)
                continue
            peer = writer.get_extra_info("peercert")
            self.seen[",".join(v for k, v in peer["subjectAltName"] if k == "DNS")] += 1
            self.expiries[float(ssl.cert_time_to_seconds(peer["notAfter"]))] += 1
            try:
                for _ in range(50 if keep_alive else 1):
                    if not self.running:
                        break
                    writer.write(f"GET / HTTP/1.1\r\nHost: {self.sni}\r\n\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    status, headers, _ = parse(head)
                    await reader.readexactly(int(headers["content-length"]))
                    if status != 200:
                        self.failures[f"status {status}"] += 1
                    else:
                        self.ok += 1
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as error:
                self.failures[f"request: {type(error).__name__}: {error}"] += 1
            finally:
                writer.close()

    async def stop(self) -> None:
        self.running = False
        await asyncio.gather(*self.tasks)


def https_farm(engine: str, ports: tuple[int, int], tls: str) -> str:
    """One web role behind an HTTPS balancer of ``engine`` (plain on ports[0], TLS on ports[1]);
    ``tls``: one more line of the tls table (``cert``/``key`` or ``acme``)."""
    return textwrap.dedent(f"""\
        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = 1

        [roles.web.lb]
        listen = "127.0.0.1:{ports[0]}"
        engine = "{engine}"
        workers = 1
        drain_timeout = "2s"

        [roles.web.lb.tls]
        listen = "127.0.0.1:{ports[1]}"
        {tls}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        """)
