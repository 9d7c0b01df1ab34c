"""The classifier: which delay class a reverse lookup puts a client in. Pure, table-driven."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.gate.rdns import CLASSES, DynamicRules, Rdns, address_in_name, classify

BUILTIN = DynamicRules()


@pytest.mark.parametrize(
    ("ip", "name", "expected"),
    [
        ("192.0.2.10", "mx1.generaldynamics.com", "static"),
        ("192.0.2.10", "mail.example.com", "static"),
        ("192.0.2.10", "resolver.example.net", "static"),
        ("192.0.2.10", "clientsupport.example.net", "static"),
        ("192.0.2.10", "dsl-pool-7.isp.example", "dynamic"),
        ("192.0.2.10", "host.dynamic.isp.example", "dynamic"),
        ("192.0.2.10", "dyn123.isp.example", "dynamic"),
        ("192.0.2.10", "cpe-7-8.cable.isp.example", "dynamic"),
        ("192.0.2.10", "ppp-42.dialup.isp.example", "dynamic"),
        ("198.51.100.73", "c-198-51-100-73.hsd1.ca.isp.example", "dynamic"),
        ("198.51.100.73", "73.100.51.198.broadband.isp.example", "dynamic"),
        ("198.51.100.73", "host198051100073.isp.example", "dynamic"),
        ("198.51.100.73", "c6336449.isp.example", "dynamic"),
        ("198.51.100.73", "static-198-51-100-73.isp.example", "static"),
        ("198.51.100.73", "fix-dsl-3.isp.example", "static"),
        ("198.51.100.73", "MX.Example.COM.", "static"),
        ("2001:db8::5", "mail-1-2-3-4.v6.isp.example", "static"),
        ("2001:db8::1:2:3:4", "mail-1-2-3-4.v6.isp.example", "dynamic"),
        ("2001:db8:0:0:a:b:c:d", "a-b-c-d.pool6.isp.example", "dynamic"),
        ("::ffff:198.51.100.73", "c-198-51-100-73.isp.example", "dynamic"),
    ],
)
def test_builtin_rules(ip: str, name: str, expected: str) -> None:
    assert classify(Rdns("confirmed", name), ip, BUILTIN) == expected


@pytest.mark.parametrize(
    ("rdns", "expected"),
    [
        (Rdns("no_ptr"), "no_ptr"),
        (Rdns("mismatch", "dsl-1.isp.example"), "mismatch"),
        (Rdns("dns_failure"), "mismatch"),
        (Rdns("dns_failure", "mx.example.com"), "mismatch"),
        (Rdns("confirmed", ""), "mismatch"),
    ],
)
def test_outcomes_other_than_confirmed(rdns: Rdns, expected: str) -> None:
    assert classify(rdns, "192.0.2.1", BUILTIN) == expected


def test_user_patterns_replace_the_builtin_rules() -> None:
    rules = DynamicRules.from_texts([r"\.home\.example$", "^BOT"])
    assert classify(Rdns("confirmed", "pc.home.example"), "192.0.2.1", rules) == "dynamic"
    assert classify(Rdns("confirmed", "bot7.example"), "192.0.2.1", rules) == "dynamic"
    assert classify(Rdns("confirmed", "dsl-pool-7.isp.example"), "192.0.2.1", rules) == "static"
    assert classify(Rdns("confirmed", "static-pc.home.example"), "192.0.2.1", rules) == "dynamic"


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
names = st.lists(labels, min_size=1, max_size=6).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ips = st.ip_addresses().map(str)
rdns_records = st.builds(Rdns, st.sampled_from(["confirmed", "mismatch", "dns_failure", "no_ptr"]),
                         st.none() | names)


@given(rdns_records, ips)
def test_every_lookup_gets_exactly_one_known_class(rdns: Rdns, ip: str) -> None:
    assert classify(rdns, ip, BUILTIN) in CLASSES


@given(names, ips)
def test_a_static_label_always_wins(name: str, ip: str) -> None:
    assert classify(Rdns("confirmed", f"static-{name}.isp.example"), ip, BUILTIN) == "static"


@given(ipv4, st.sampled_from(["-", "."]), st.booleans())
def test_the_client_address_written_in_the_name_is_dynamic(ip: str, separator: str, reverse: bool) -> None:
    octets = ip.split(".")
    written = separator.join(reversed(octets) if reverse else octets)
    assert address_in_name(ip, f"c-{written}.hsd1.isp.example")
    assert classify(Rdns("confirmed", f"c-{written}.hsd1.isp.example"), ip, BUILTIN) == "dynamic"


@given(names)
def test_words_inside_a_label_do_not_count(name: str) -> None:
    """Label boundaries: 'generaldynamics', 'resolver', 'clientele' are not dynamic words."""
    for word in ("generaldynamics", "resolver", "clientele", "poolside", "cablevision"):
        assert classify(Rdns("confirmed", f"{word}.{name}.example"), "192.0.2.1", BUILTIN) in ("static", "dynamic")
        assert classify(Rdns("confirmed", f"{word}.example.com"), "192.0.2.1", BUILTIN) == "static"


def test_garbage_addresses_do_not_crash() -> None:
    assert not address_in_name("not an ip", "c-1-2-3-4.example")
    assert ipaddress.ip_address("192.0.2.1")
