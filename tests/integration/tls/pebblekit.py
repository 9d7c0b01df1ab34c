"""Pebble (Let's Encrypt's test ACME server, Debian's package) for one test, on loopback.

FIELD-NOTES "Certificates (ACME) in tests": Pebble ships no certificate for its own API, so
the test's CA makes one; ``PEBBLE_VA_NOSLEEP=1`` skips its validation delays; names are
resolved by a DNS stub (dnslib) that answers 127.0.0.1 for every name except those under
``refused.test`` (NXDOMAIN, so Pebble refuses to validate them); Pebble's issuing root
changes at every start and is fetched from its management port. ``validity`` makes Pebble
issue short-lived certificates (its config's ``certificateValidityPeriod``, in seconds, which
Debian's 2.4 reads), so a renewal comes within a test's time.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from tests.integration.farmkit import free_port

REFUSED_ZONE = "refused.test"


class LoopbackResolver(BaseResolver):  # type: ignore[misc]
    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if name == REFUSED_ZONE or name.endswith("." + REFUSED_ZONE):
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=5))
        return reply


@dataclass
class Pebble:
    directory: str
    ca_file: Path
    """Trust for Pebble's own HTTPS API (what the farm's ``acme.ca_file`` names)."""
    root_pem: str
    """Pebble's issuing root for this run: what clients of the balancer trust."""
    proc: subprocess.Popen[bytes]
    dns: DNSServer

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.dns.stop()


def start_pebble(folder: Path, http_port: int, validity: int | None = None) -> Pebble:
    """Pebble validating HTTP-01 on ``http_port`` of 127.0.0.1 (the balancer's plain port);
    its certificates last ``validity`` seconds (Pebble's default, five years, when None)."""
    if shutil.which("pebble") is None:
        raise RuntimeError("pebble is not installed (apt-get install pebble; scripts/bootstrap does)")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = folder / "pebble.crt", folder / "pebble.key", folder / "pebble-ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    ca_file.write_bytes(ca.cert_pem.bytes())
    dns_port = free_port()
    dns = DNSServer(LoopbackResolver(), port=dns_port, address="127.0.0.1")
    dns.start_thread()
    api, management = free_port(), free_port()
    config = folder / "pebble.json"
    settings = {
        "listenAddress": f"127.0.0.1:{api}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }
    if validity is not None:
        settings["certificateValidityPeriod"] = validity
    config.write_text(json.dumps({"pebble": settings}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    log = open(folder / "pebble.log", "wb")  # noqa: SIM115 - the process holds it
    proc = subprocess.Popen(["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                root = httpx.get(f"https://127.0.0.1:{management}/roots/0", verify=ssl.create_default_context(cafile=str(ca_file)), timeout=2)
                if root.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pebble did not start: {(folder / 'pebble.log').read_text()[-2000:]}")
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        dns.stop()
        raise
    return Pebble(f"https://127.0.0.1:{api}/dir", ca_file, root.text, proc, dns)
