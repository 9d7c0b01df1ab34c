"""Certificates changing under a running farm while clients keep going (issue 15, both engines).

- ACME renewal: Pebble issues certificates that last ``LIFETIME`` seconds, so the controller
  finds the one it serves due (a third of its lifetime left) within the test, orders again and
  loads the new one live. A client loop of HTTPS requests (half kept alive, half a new
  handshake each, every handshake verifying the certificate against Pebble's root, expiry
  included) goes on past the end of the first certificate without a failed request, and the
  renewal is a second ``tls.issued`` event.
- User-given files replaced on disk: the controller notices (it looks every few seconds) and
  the balancer serves the new certificate, again without a failed request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.integration.farmkit import Farm
from tests.integration.lb.lb_harness import wait_for
from tests.integration.tls.pebblekit import Pebble, start_pebble
from tests.integration.tls.tlskit import HttpsLoad, client_context, https_farm, write_cert

pytestmark = pytest.mark.slow

LIFETIME = 45
"""Seconds a Pebble certificate lasts here: due for renewal 30 s after it is issued, 15 s
before it ends: the time a busy machine has to order and load the next one."""


@pytest.fixture
def short_lived_pebble(tmp_path: Path, ports: tuple[int, int]) -> Iterator[Pebble]:
    folder = tmp_path / "pebble"
    folder.mkdir()
    server = start_pebble(folder, http_port=ports[0], validity=LIFETIME)
    yield server
    server.stop()


def kinds(farm: Farm, kind: str) -> list[dict[str, object]]:
    return [event for event in farm.events() if event["kind"] == kind]


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_an_acme_certificate_renews_under_load(make_farm: Callable[..., Farm], short_lived_pebble: Pebble,
                                               ports: tuple[int, int], engine: str) -> None:
    pebble = short_lived_pebble
    farm = make_farm(https_farm(engine, ports, (
        f'acme = {{ names = ["shop.test"], directory = "{pebble.directory}", ca_file = "{pebble.ca_file}" }}')))
    farm.up()
    farm.wait_ready("web", 1)
    trust = ssl.create_default_context()
    trust.load_verify_locations(cadata=pebble.root_pem)

    async def run() -> HttpsLoad:
        async def issued(count: int) -> bool:
            return len(await asyncio.to_thread(kinds, farm, "tls.issued")) >= count

        await wait_for(lambda: issued(1), "the first certificate", timeout=60)
        load = HttpsLoad(ports[1], trust, "shop.test")
        load.start()
        try:
            await wait_for(lambda: load.ok >= 50 and bool(load.expiries), "requests over the first certificate", timeout=60)
            first_end = min(load.expiries)
            await wait_for(lambda: issued(2), "the renewal's tls.issued event", timeout=LIFETIME * 3)
            await wait_for(lambda: any(end > first_end for end in load.expiries), "handshakes with the renewed certificate")
            await wait_for(lambda: time.time() > first_end + 1, "the first certificate's end", timeout=LIFETIME * 2)
            past_end = load.ok
            await wait_for(lambda: load.ok >= past_end + 100, "requests after the first certificate ended")
        finally:
            await load.stop()
        return load

    load = asyncio.run(run())
    assert not load.failures, load.failures
    assert len(load.expiries) >= 2, load.expiries
    renewal = kinds(farm, "tls.issued")[1]
    assert "shop.test" in str(renewal["message"]) and "Pebble" in str(renewal["message"])
    assert not kinds(farm, "tls.failed")


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_replaced_certificate_files_are_served_without_a_failed_request(make_farm: Callable[..., Farm],
                                                                         ports: tuple[int, int], engine: str) -> None:
    ca = trustme.CA()
    farm = make_farm(https_farm(engine, ports, 'cert = "site.crt"\nkey = "site.key"'))
    write_cert(ca, farm.folder, "site", "old.test", "site.test")
    farm.up()
    farm.wait_ready("web", 1)

    async def run() -> HttpsLoad:
        load = HttpsLoad(ports[1], client_context(ca), "site.test")
        load.start()
        try:
            await wait_for(lambda: load.seen["old.test,site.test"] >= 5 and load.ok >= 100, "requests over the old files")
            write_cert(ca, farm.folder, "site", "new.test", "site.test")  # the same paths, new contents
            await wait_for(lambda: load.seen["new.test,site.test"] >= 5, "handshakes with the new certificate", timeout=60)
            swapped = load.ok
            await wait_for(lambda: load.ok >= swapped + 100, "requests after the swap")
        finally:
            await load.stop()
        return load

    load = asyncio.run(run())
    assert not load.failures, load.failures
    assert kinds(farm, "tls.loaded")
    served = farm.status()["roles"][0]["tls"]
    assert "new.test" in served["names"], served
