"""Certificates from an ACME server (Pebble, started by the test) for a farm's role (issue 15.2).

A role whose ``lb.tls`` lists ACME names gets a certificate on first start: the balancer
starts with a self-signed placeholder, the controller orders, the balancer answers the
HTTP-01 challenge on its plain listener, and the issued certificate is loaded live and
served over HTTPS (a client trusting only Pebble's root verifies it). A name Pebble refuses
to validate is an event carrying Pebble's reason, and the role goes on serving.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.farmkit import Farm, wait_for
from tests.integration.tls.pebblekit import Pebble, start_pebble
from tests.integration.tls.tlskit import get, https_farm

pytestmark = pytest.mark.slow


@pytest.fixture
def pebble(tmp_path: Path, ports: tuple[int, int]) -> Iterator[Pebble]:
    folder = tmp_path / "pebble"
    folder.mkdir()
    server = start_pebble(folder, http_port=ports[0])
    yield server
    server.stop()


def acme_farm(engine: str, ports: tuple[int, int], pebble: Pebble, names: list[str]) -> str:
    listed = ", ".join(f'"{n}"' for n in names)
    return https_farm(engine, ports, f'acme = {{ names = [{listed}], directory = "{pebble.directory}", '
                                     f'ca_file = "{pebble.ca_file}", email = "ops@example.org" }}')


def trusting(root_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=root_pem)
    return context


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_a_role_gets_a_certificate_on_first_start(make_farm: Callable[..., Farm], pebble: Pebble,
                                                   ports: tuple[int, int], engine: str) -> None:
    farm = make_farm(acme_farm(engine, ports, pebble, ["shop.test", "www.shop.test"]))
    farm.up()
    farm.wait_ready("web", 1)
    issued = wait_for(lambda: [e for e in farm.events() if e["kind"] in ("tls.issued", "tls.failed")], 60,
                      "the ACME order to end")
    assert issued[0]["kind"] == "tls.issued", issued
    assert "shop.test, www.shop.test" in issued[0]["message"] and "Pebble" in issued[0]["message"]
    status, _, _ = asyncio.run(get(ports[1], trusting(pebble.root_pem), "www.shop.test"))
    assert status == 200
    key_file = farm.state.path / "tls" / "web" / "acme.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    served = wait_for(lambda: farm.status()["roles"][0]["tls"], 20, "status to show the certificate")
    assert served["names"] == ["shop.test", "www.shop.test"] and "Pebble" in served["issuer"]
    assert served["not_after"] > served["not_before"] and not served["self_signed"]
    assert served["last_failure"] is None
    url, _ = farm.api()
    scraped = httpx.get(url + "/metrics", timeout=20, trust_env=False).text
    expiry = [sample for family in text_string_to_metric_families(scraped) for sample in family.samples
              if sample.name == "farmhand_tls_cert_expiry_seconds"]
    assert [(s.labels["role"], s.labels["names"], s.value) for s in expiry] == [
        ("web", "shop.test,www.shop.test", served["not_after"])]


def test_a_refused_order_is_an_event_and_the_role_keeps_serving(make_farm: Callable[..., Farm], pebble: Pebble,
                                                                ports: tuple[int, int]) -> None:
    farm = make_farm(acme_farm("builtin", ports, pebble, ["gone.refused.test"]))
    farm.up()
    farm.wait_ready("web", 1)
    failed = wait_for(lambda: [e for e in farm.events() if e["kind"] == "tls.failed"], 60, "the refused order's event")
    message = failed[0]["message"]
    assert "gone.refused.test" in message and "could not resolve" in message and "trying again" in message  # Pebble's words
    assert not [e for e in farm.events() if e["kind"] == "tls.issued"]
    served = farm.status()["roles"][0]["tls"]  # what the dashboard shows: the placeholder and why
    assert served["self_signed"] and "could not resolve" in served["last_failure"]["message"], served
    placeholder = ssl.create_default_context()
    placeholder.check_hostname = False
    placeholder.verify_mode = ssl.CERT_NONE  # the self-signed placeholder still serves
    status, _, _ = asyncio.run(get(ports[1], placeholder, "gone.refused.test"))
    assert status == 200
