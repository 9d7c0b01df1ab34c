"""The dashboard shows each HTTPS role's certificate (issue 15): its names, issuer and
expiry with the time left, a warning when a third of its lifetime or less is left, and the
reason when the last renewal or reload failed, in a real browser against a real farm whose
builtin balancer serves the user's certificate files (made here with trustme).

The files change under the running farm (the controller looks at them every few seconds):
a key that does not belong to its certificate is refused (``tls.failed``, the balancer keeps
the old one, the page says why), then a certificate near its end is loaded (the failure is
settled, the page warns that renewal is due)."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest
import trustme
from playwright.sync_api import expect

from tests.e2e.conftest import Dashboard, FarmMaker, api_status
from tests.integration.farmkit import free_port, wait_for
from tests.integration.tls.tlskit import https_farm

pytestmark = pytest.mark.slow

FILE_CHANGE_DEADLINE_MS = 45_000
"""Longest wait for the page to show a change of the certificate files (the controller
looks every few seconds; a busy machine stretches that)."""


def write_leaf(ca: trustme.CA, folder: Path, *names: str, lifetime: datetime.timedelta,
               left: datetime.timedelta, key_from: trustme.CA | None = None) -> None:
    """site.crt + site.key for ``names``, valid for ``lifetime`` of which ``left`` remains.
    ``key_from``: take the key of a leaf from that CA instead (a key that does not belong)."""
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert(*names, not_before=now + left - lifetime, not_after=now + left,
                         key_type=trustme.KeyType.ECDSA)
    key = leaf if key_from is None else key_from.issue_cert(*names, key_type=trustme.KeyType.ECDSA)
    (folder / "site.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    (folder / "site.key").write_bytes(key.private_key_pem.bytes())


def test_the_roles_table_shows_the_certificate_its_end_and_its_troubles(make_farm: FarmMaker,
                                                                        dashboard: Dashboard) -> None:
    ca = trustme.CA()
    farm = make_farm(https_farm("builtin", (free_port(), free_port()), 'cert = "site.crt"\nkey = "site.key"'))
    write_leaf(ca, farm.folder, "site.test", "www.site.test",
               lifetime=datetime.timedelta(days=90), left=datetime.timedelta(days=60))
    farm.up()
    wait_for(lambda: api_status(farm)["roles"][0]["tls"], 30, "the served certificate in status")
    dashboard.open(farm)
    page = dashboard.page
    cert = page.locator('tr[data-role="web"] .cert')

    expect(cert).to_be_visible()
    expect(cert.locator(".cert-names")).to_have_text("TLS: site.test, www.site.test")
    expect(cert.locator(".cert-issuer")).to_contain_text("issuer trustme")
    expect(cert.locator(".cert-expiry")).to_contain_text("(59d 23h left)")
    expect(cert).to_have_attribute("data-state", "ok")
    expect(cert).to_have_attribute("data-tone", "ok")
    expect(cert.locator(".cert-failure")).to_be_hidden()
    dashboard.shot("certificate")

    # A key from elsewhere: refused, the balancer keeps serving the old pair.
    write_leaf(ca, farm.folder, "site.test", "www.site.test", lifetime=datetime.timedelta(days=90),
               left=datetime.timedelta(days=60), key_from=trustme.CA())
    failure = cert.locator(".cert-failure")
    expect(failure).to_be_visible(timeout=FILE_CHANGE_DEADLINE_MS)
    expect(failure).to_contain_text("last attempt failed")
    expect(failure).to_contain_text("the key does not belong to the certificate")
    expect(cert).to_have_attribute("data-tone", "warn")
    expect(cert.locator(".cert-names")).to_have_text("TLS: site.test, www.site.test")
    assert any(e["kind"] == "tls.failed" for e in farm.events())
    dashboard.shot("failed-reload")

    # A good pair near its end (5 of 30 days left): loaded, the failure settled, renewal due.
    write_leaf(ca, farm.folder, "site.test", "shop.site.test", lifetime=datetime.timedelta(days=30),
               left=datetime.timedelta(days=5))
    expect(cert.locator(".cert-names")).to_have_text("TLS: site.test, shop.site.test", timeout=FILE_CHANGE_DEADLINE_MS)
    expect(failure).to_be_hidden()
    expect(cert).to_have_attribute("data-state", "renew")
    expect(cert).to_have_attribute("data-tone", "warn")
    expect(cert.locator(".cert-expiry")).to_contain_text("renewal due")
    expect(cert.locator(".cert-expiry")).to_contain_text("(4d 23h left)")
    dashboard.shot("renewal-due")


def test_a_role_without_https_shows_no_certificate(make_farm: FarmMaker, dashboard: Dashboard) -> None:
    farm = make_farm(textwrap.dedent(f"""\
        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = 1

        [roles.web.lb]
        listen = "127.0.0.1:{free_port()}"
        workers = 1
        """))
    farm.up()
    dashboard.open(farm)
    row = dashboard.page.locator('tr[data-role="web"]')
    expect(row.locator(".lb-text")).to_contain_text("builtin")
    expect(row.locator(".cert")).to_be_hidden()
