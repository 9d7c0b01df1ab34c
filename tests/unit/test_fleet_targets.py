"""Fleet targets without hosts: node sets, @groups, @roles, and the farm file's [groups]."""

from __future__ import annotations

import pytest

from farmhand.errors import RequestError, SpecError
from farmhand.fleet.targets import Inventory, expand, fold, hosts_of, inventory_of
from farmhand.spec.load import parse_farm

INVENTORY = Inventory(
    groups={"zone-a": ["h[2-4]"], "db": ["h5"], "both": ["@zone-a,@db"], "loop": ["@loop"]},
    roles={"web": ["h1", "h2", "h3"]},
    hosts={f"h{i}": f"10.213.0.{i + 9}" for i in range(1, 6)},
)


@pytest.mark.parametrize(("target", "hosts"), [
    ("h1", ["h1"]),
    ("@web&@zone-a", ["h2", "h3"]),
    ("h[1-5]!h3", ["h1", "h2", "h4", "h5"]),
    ("@both", ["h2", "h3", "h4", "h5"]),
    ("10.213.0.[10-11]", ["h1", "h2"]),
    ("h1,h1,10.213.0.10", ["h1"]),
    ("@web^@zone-a", ["h1", "h4"]),
])
def test_targets_name_the_farms_hosts(target: str, hosts: list[str]) -> None:
    assert hosts_of(target, INVENTORY) == hosts


@pytest.mark.parametrize(("target", "says"), [
    ("@nope", "no group or role @nope"),
    ("h9", "not hosts of this farm: h9"),
    ("h[1-", "is not a node set"),
    ("@loop", "refers to itself"),
    ("  ", "empty target"),
    ("h1!h1", "names no host"),
])
def test_bad_targets_say_what_is_wrong(target: str, says: str) -> None:
    with pytest.raises(RequestError) as caught:
        hosts_of(target, INVENTORY)
    assert says in str(caught.value)
    assert caught.value.field == "target"


def test_a_name_both_group_and_role_is_refused() -> None:
    inventory = Inventory(groups={"web": ["h1"]}, roles={"web": ["h2"]}, hosts={"h1": None, "h2": None})
    with pytest.raises(RequestError, match="both a group and a role"):
        hosts_of("@web", inventory)


def test_nodeset_ranges_and_folding() -> None:
    assert len(expand("web[01-20]", Inventory())) == 20
    assert expand("web[1-10]!web3", Inventory()) == [f"web{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert fold(["h1", "h2", "h3", "h10"]) == "h[1-3,10]"


def test_groups_come_from_the_farm_file_and_roles_from_their_hosts() -> None:
    spec = parse_farm("""
[hosts.a1]
driver = "local"
labels = { zone = "a" }
[hosts.b1]
driver = "local"
[groups]
db = ["a1", "b1"]
[roles.web]
command = "sleep 60"
require = { zone = "a" }
""")
    inventory = inventory_of(spec)
    assert hosts_of("@db", inventory) == ["a1", "b1"]
    assert hosts_of("@web", inventory) == ["a1"], "offline, a role means the hosts it may run on"
    assert hosts_of("@web", inventory_of(spec, {"web": ["b1"]})) == ["b1"], "the controller's placement wins"


@pytest.mark.parametrize(("table", "says"), [
    ('db = []', "at least one member"),
    ('db = ["h 1"]', "not a host name or node-set pattern"),
    ('"Bad" = ["h1"]', "groups"),
])
def test_bad_groups_are_refused_naming_the_key(table: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_farm(f"[groups]\n{table}\n")
    assert says in str(caught.value)
