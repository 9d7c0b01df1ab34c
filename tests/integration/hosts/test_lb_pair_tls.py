"""Issues 14 and 15 on test hosts: an HTTPS listener on a load-balancer pair (h1, h2) behind
a floating address, its nodes on h3, and an HTTPS client in h4's namespace that trusts only
the test's CA and loops requests to the address throughout, each on a new handshake:

1. the pair serves the user's certificate on the address; each member holds its own copy,
   0600 in its folder;
2. the files are replaced: the controller sees the change and every member loads the new
   certificate live: the client switches to it with no failed request, and both members
   serve it;
3. the holder's balancer is killed: the other member takes the address and serves the same
   (new) certificate; the killed one is started again with it.

And with ACME (Pebble, in the root namespace, resolving every name to the address): the
HTTP-01 challenge is answered by whichever member holds the address (every member is given
the answers), and the issued certificate reaches both members.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver
from tests.integration.farmkit import APP, Farm, wait_for
from tests.integration.hosts.pairkit import (
    PORT,
    LoopClient,
    became_master_after,
    farm_text,
    holder_is,
    kill_balancer,
    member_back,
    member_processes,
    pair_run,
    served_folder,
    vip_of,
    wait_pair,
)
from tests.integration.tls.pebblekit import Pebble, start_pebble
from tests.testhosts import TestHostRun

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("pair_tls_client.py")
TLS_PORT = 8443
NAME = "site.test"


@pytest.fixture(scope="module")
def hosts() -> Iterator[TestHostRun]:
    """h1, h2: the pair (root logins: keepalived moves an address); h3: the nodes; h4: the client."""
    yield from pair_run("keepalived", missing="keepalived is not installed (scripts/bootstrap)")


@pytest.fixture
def folder() -> Iterator[Path]:
    """The app and the certificates (world-readable folder: the nodes run as the test user)."""
    yield from served_folder("fh-pair-tls-", APP, "app.py")


def write_cert(ca: trustme.CA, cert: Path, key: Path) -> str:
    """A new leaf for NAME, its files replaced atomically; the sha256 of its DER form."""
    leaf = ca.issue_cert(NAME, key_type=trustme.KeyType.ECDSA)
    for path, data in ((cert, b"".join(b.bytes() for b in leaf.cert_chain_pems)), (key, leaf.private_key_pem.bytes())):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())).hexdigest()


def served_by(address: str, ca_file: Path) -> str | None:
    """The sha256 of the certificate the balancer at ADDRESS:TLS_PORT serves (None: no answer)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection((address, TLS_PORT), timeout=2) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    except OSError:
        return None


def tls_farm(run: TestHostRun, app: Path, engine: str, cert: Path, key: Path) -> str:
    vip = vip_of(run)
    return farm_text(run, app, engine) + textwrap.dedent(f"""\

        [roles.web.lb.tls]
        listen = "{vip}:{TLS_PORT}"
        cert = "{cert}"
        key = "{key}"
        """)


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_pair_serves_https_and_swaps_its_certificate_on_every_member(
        hosts: TestHostRun, make_farm: Callable[..., Farm], folder: Path, engine: str) -> None:
    if engine == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap)")
    run = hosts
    by_name = {h.name: h for h in run.hosts}
    members = [by_name["h1"], by_name["h2"]]
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca_file.chmod(0o644)
    cert, key = folder / "site.crt", folder / "site.key"
    first = write_cert(ca, cert, key)
    farm = make_farm(tls_farm(run, folder, engine, cert, key))
    farm.up()
    farm.wait_ready("web", 2, timeout=60)
    held = wait_for(lambda: holder_is(farm, lambda h: h in ("h1", "h2")), 30, "a member holding the address")
    active = held["holder"]
    other = "h2" if active == "h1" else "h1"
    wait_pair(farm, lambda: member_back(farm, other), 30, f"{other} as a backup with its balancer running", members)

    # 1. the user's certificate on the address; a private copy on each member
    for host in members:
        copy = host.base_dir / "lb" / "web" / "tls" / "cert-0.pem"
        assert copy.stat().st_mode & 0o777 == 0o600, f"{copy} is not private"
        assert (copy.parent.stat().st_mode & 0o777) == 0o700
        assert served_by(host.address, ca_file) == first, f"{host.name} does not serve the user's certificate"

    log = Path(tempfile.mkdtemp(prefix="fh-pair-tls-client-")) / "client.jsonl"
    client = LoopClient(by_name["h4"], CLIENT, [f"https://{vip_of(run)}:{TLS_PORT}/", str(ca_file), NAME], log)
    try:
        wait_for(lambda: client.answers_after(0, first) >= 20, 30, "the client's first HTTPS answers through the address")

        # 2. new files: every member loads them live, no request fails
        swapped_at = time.time()
        second = write_cert(ca, cert, key)
        wait_for(lambda: client.answers_after(swapped_at, second) >= 20, 60, "the client served the new certificate")
        for host in members:
            wait_for(lambda h=host: served_by(h.address, ca_file) == second, 30, f"{host.name} serving the new certificate")
        assert any(e["kind"] == "tls.loaded" for e in farm.events())
        failed = [r for r in client.records() if not r["ok"]]
        assert not failed, f"failed requests across the swap: {failed[:5]}"
        switched = min(r["end"] for r in client.records() if r["cert"] == second)
        assert not any(r["cert"] == first and r["start"] > switched for r in client.records()), \
            "the old certificate came back after the new one was served"

        # 3. the holder's balancer dies: the other member serves the same certificate
        killed_at = time.time()
        kill_balancer(by_name[active])
        took = wait_for(lambda: became_master_after(by_name[other], killed_at), 30, f"{other} taking the address")
        wait_for(lambda: client.answers_after(took, second) >= 20, 30, f"HTTPS answers through {other}")
        assert not any(r["ok"] and r["start"] > took and r["cert"] != second for r in client.records())
        wait_pair(farm, lambda: member_back(farm, active), 60, f"{active}'s balancer started again, a backup", members)
        assert served_by(by_name[active].address, ca_file) == second, "the restarted member serves the current certificate"

        farm.cli("down", "--timeout", "30")
        wait_for(lambda: not member_processes(members), 30, "nothing left on h1 and h2")
    finally:
        client.stop()
        shutil.rmtree(log.parent, ignore_errors=True)


class VipResolver(BaseResolver):  # type: ignore[misc]
    """Every name is the pair's address: Pebble validates HTTP-01 on whichever member holds it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        if request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.address), ttl=5))
        return reply


@pytest.fixture
def pebble(folder: Path) -> Iterator[Pebble]:
    """Pebble (in the root namespace, which reaches the test hosts' network) validating on the
    pair's plain port."""
    if shutil.which("pebble") is None:
        pytest.skip("pebble is not installed (scripts/bootstrap)")
    where = folder / "pebble"
    where.mkdir()
    server = start_pebble(where, http_port=PORT)
    try:
        yield server
    finally:
        server.stop()


def test_pair_gets_an_acme_certificate_answered_by_the_holder(
        hosts: TestHostRun, make_farm: Callable[..., Farm], folder: Path, pebble: Pebble) -> None:
    run = hosts
    vip = vip_of(run)
    pebble.dns.server.resolver = VipResolver(vip)
    by_name = {h.name: h for h in run.hosts}
    members = [by_name["h1"], by_name["h2"]]
    text = farm_text(run, folder, "builtin") + textwrap.dedent(f"""\

        [roles.web.lb.tls]
        listen = "{vip}:{TLS_PORT}"
        acme = {{ names = ["{NAME}"], directory = "{pebble.directory}", ca_file = "{pebble.ca_file}" }}
        """)
    farm = make_farm(text)
    farm.up()
    farm.wait_ready("web", 2, timeout=60)
    ended = wait_for(lambda: [e for e in farm.events() if e["kind"] in ("tls.issued", "tls.failed")], 90,
                     "the ACME order to end")
    assert ended[0]["kind"] == "tls.issued", ended
    root = folder / "pebble-root.pem"
    root.write_text(pebble.root_pem)
    for host in members:  # both serve it: the holder now, the other the moment the address moves
        wait_for(lambda h=host: served_by(h.address, root) is not None, 30, f"{host.name} serving the issued certificate")
        assert (host.base_dir / "lb" / "web" / "tls" / "acme.pem").stat().st_mode & 0o777 == 0o600
    farm.cli("down", "--timeout", "30")
    wait_for(lambda: not member_processes(members), 30, "nothing left on h1 and h2")
