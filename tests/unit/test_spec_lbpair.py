"""Farm-file keys of load-balancer pairs (hosts + vip): accepted forms, and errors that name
the file, line and key."""

from __future__ import annotations

import textwrap

import pytest

from farmhand.errors import SpecError
from farmhand.spec import parse_farm
from farmhand.spec.lbpair import default_vrrp_id
from tests.unit.lb.pairkit import MEMBER_HOSTS

HOSTS = MEMBER_HOSTS + """\
[hosts.here]
driver = "local"
"""


def farm(lb: str) -> str:
    return HOSTS + textwrap.dedent(f"""\
        [roles.web]
        command = "app {{port}}"
        [roles.web.lb]
        {lb}
        """)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_farm(text, "farm.toml")
    return [str(p) for p in caught.value.problems]


def test_a_pair_is_read_with_its_members_host_tables() -> None:
    spec = parse_farm(farm('listen = "10.213.0.100:8080"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"'))
    lb = spec.roles["web"].lb
    assert lb is not None and lb.is_pair and not lb.preempt
    assert lb.vip_address == "10.213.0.100"
    assert list(lb.member_hosts) == ["lb1", "lb2"]
    assert lb.member_hosts["lb2"].address == "10.213.0.12"


def test_a_balancer_without_hosts_is_no_pair() -> None:
    lb = parse_farm(farm('listen = "127.0.0.1:8080"')).roles["web"].lb
    assert lb is not None and not lb.is_pair and lb.member_hosts == {}


@pytest.mark.parametrize(("lb", "wanted"), [
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]', "needs vip"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1"]\nvip = "10.213.0.100/24"', "at least two hosts"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb1"]\nvip = "10.213.0.100/24"', "twice"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100"', "prefix length"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.300/24"', "not an address"),
    ('listen = "127.0.0.1:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"', "listen must be on the vip"),
    ('listen = "10.213.0.100:25"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\ngate = "smtp-delay"', "needs a tcp listener"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\nvrrp_id = 300', "vrrp_id"),
    ('listen = "127.0.0.1:80"\nvrrp_id = 3', "for load-balancer pairs"),
    ('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\n'
     'tls = { listen = "127.0.0.1:443", cert = "c.pem", key = "k.pem" }', "tls.listen must be on the vip"),
])
def test_bad_pairs_name_the_lb_table(lb: str, wanted: str) -> None:
    found = problems(farm(lb))
    assert any(wanted in p and "roles.web.lb" in p and "farm.toml:" in p for p in found), found


def test_a_pair_may_serve_https_with_certificate_files() -> None:
    lb = parse_farm(farm('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\n'
                         'tls = { listen = "10.213.0.100:443", cert = "c.pem", key = "k.pem" }')).roles["web"].lb
    assert lb is not None and lb.is_pair and lb.tls is not None and lb.tls.host_port == ("10.213.0.100", 443)
    lb = parse_farm(farm('listen = "0.0.0.0:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\n'
                         'tls = { listen = "0.0.0.0:443", acme = { names = ["a.test"] } }')).roles["web"].lb
    assert lb is not None and lb.tls is not None and lb.tls.acme is not None


def test_members_must_be_ssh_hosts_of_the_farm() -> None:
    found = problems(farm('listen = "0.0.0.0:80"\nhosts = ["lb1", "here", "nope"]\nvip = "10.213.0.100/24"'))
    assert any("'here' is a local host" in p and "roles.web.lb.hosts" in p for p in found), found
    assert any("'nope' is not a host of [hosts]" in p for p in found), found


def test_two_pairs_cannot_share_a_virtual_router_id() -> None:
    text = farm('listen = "10.213.0.100:80"\nhosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\nvrrp_id = 7') + textwrap.dedent("""\
        [roles.api]
        command = "app {port}"
        [roles.api.lb]
        listen = "10.213.0.101:80"
        hosts = ["lb1", "lb2"]
        vip = "10.213.0.101/24"
        vrrp_id = 7
        """)
    assert any("virtual router id 7" in p and "roles.api.lb.vrrp_id" in p for p in problems(text))


def test_default_vrrp_id_is_stable_and_in_range() -> None:
    ids = {default_vrrp_id(f"role-{i}") for i in range(500)}
    assert all(1 <= i <= 255 for i in ids)
    assert default_vrrp_id("web") == default_vrrp_id("web")
