"""HTTPS at the balancer with the user's own certificate files, both engines (issue 15.1).

The balancer serves the certificates it was given, chooses among several by SNI, speaks
TLS 1.2 and 1.3 only, tells backends ``X-Forwarded-Proto: https``, redirects plain HTTP and
sends HSTS when asked, keeps its copies of the keys 0600, and loads new certificate files
while clients keep going, without a failed request.
"""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from farmhand.dataplane import Backend
from farmhand.lb.tls import refreshed
from tests.integration.lb.lb_harness import Backends, wait_for
from tests.integration.tls.tlskit import HttpsLoad, client_context, get, handshake, write_cert

pytestmark = pytest.mark.slow


async def serving(plane: Any, backends: Backends) -> None:
    await plane.ensure_running()
    nodes = await backends.start(1)
    await plane.set_backends([Backend(n.name, "127.0.0.1", n.port) for n in nodes])


async def test_serves_https_by_sni_with_forwarded_proto(engine: str, plane_factory: Any, backends: Backends,
                                                         ca: trustme.CA, tmp_path: Path) -> None:
    a = write_cert(ca, tmp_path, "a", "a.test")
    b = write_cert(ca, tmp_path, "b", "b.test", "*.b.test")
    plane = plane_factory(engine, {"certs": [{"cert": str(a[0]), "key": str(a[1])},
                                              {"cert": str(b[0]), "key": str(b[1])}], "hsts": "1h"})
    await serving(plane, backends)
    port = plane_factory.tls_port
    trust = client_context(ca)

    assert (await handshake(port, trust, "a.test"))[0] == "a.test"
    assert (await handshake(port, trust, "b.test"))[0] == "b.test,*.b.test"
    assert (await handshake(port, trust, "x.b.test"))[0] == "b.test,*.b.test"
    assert (await handshake(port, trust, "a.test"))[1] in ("TLSv1.2", "TLSv1.3")
    tls12 = client_context(ca, maximum=ssl.TLSVersion.TLSv1_2)
    assert (await handshake(port, tls12, "a.test"))[1] == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionError)):  # refused: an alert, or the connection reset
        await handshake(port, client_context(ca, maximum=ssl.TLSVersion.TLSv1_1), "a.test")

    status, headers, body = await get(port, trust, "b.test")
    assert status == 200 and body.startswith(b"n")
    assert headers["x-seen-proto"] == "https"
    assert headers["strict-transport-security"] == "max-age=3600"
    async with httpx.AsyncClient(verify=trust) as client:  # an ordinary client, by IP address
        answer = await client.get(f"https://127.0.0.1:{port}/")
        assert answer.status_code == 200 and answer.headers["x-seen-proto"] == "https"
        plain = await client.get(f"http://127.0.0.1:{plane_factory.port}/")
        assert plain.status_code == 200 and plain.headers["x-seen-proto"] == "http"
        assert "strict-transport-security" not in plain.headers

    folder = plane_factory.state_dir / "tls" / "web"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for copy in folder.glob("*.pem"):
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600


async def test_redirects_plain_http_to_https(engine: str, plane_factory: Any, backends: Backends,
                                             ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = write_cert(ca, tmp_path, "site", "site.test")
    plane = plane_factory(engine, {"cert": str(cert), "key": str(key), "redirect_http": True})
    await serving(plane, backends)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{plane_factory.port}/page?x=1", headers={"Host": "site.test"})
    assert answer.status_code == 301
    assert answer.headers["location"] == f"https://site.test:{plane_factory.tls_port}/page?x=1"


async def test_new_certificates_load_without_a_failed_request(engine: str, plane_factory: Any, backends: Backends,
                                                              ca: trustme.CA, tmp_path: Path) -> None:
    """The user replaces the files; the balancer loads them (what ``farmhand reload`` and
    renewals do) while clients keep going: new handshakes get the new certificate, nothing fails."""
    cert, key = write_cert(ca, tmp_path, "site", "old.test", "site.test")
    plane = plane_factory(engine, {"cert": str(cert), "key": str(key)})
    await serving(plane, backends)
    load = HttpsLoad(plane_factory.tls_port, client_context(ca), "site.test")
    load.start()
    try:
        await wait_for(lambda: load.ok >= 200, "requests over the old certificate")
        write_cert(ca, tmp_path, "site", "new.test", "site.test")  # same paths, new contents
        from farmhand.lb.tls import settings_for
        from farmhand.spec.tls import TlsSpec

        fresh = settings_for("web", TlsSpec(listen=f"127.0.0.1:{plane_factory.tls_port}", cert=str(cert), key=str(key)),
                             plane_factory.state_dir)
        assert fresh.version != plane.settings.tls.version
        await plane.set_tls(fresh)
        assert refreshed(fresh).version == fresh.version
        seen_before = load.ok
        await wait_for(lambda: load.seen["new.test,site.test"] >= 5, "handshakes with the new certificate")
        await wait_for(lambda: load.ok >= seen_before + 200, "requests after the swap")
    finally:
        await load.stop()
    assert not load.failures, load.failures
    assert load.seen["old.test,site.test"] > 0


async def test_a_bad_key_is_refused_naming_the_file(engine: str, plane_factory: Any, ca: trustme.CA,
                                                    tmp_path: Path) -> None:
    from farmhand.certs import CertError

    cert, _ = write_cert(ca, tmp_path, "one", "one.test")
    _, other_key = write_cert(ca, tmp_path, "two", "two.test")
    with pytest.raises(CertError, match="does not belong"):
        plane_factory(engine, {"cert": str(cert), "key": str(other_key)})
    await asyncio.sleep(0)
