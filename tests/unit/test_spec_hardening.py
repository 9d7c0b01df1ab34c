"""What `check` used to accept and then failed at run time (issue 10, items 2, 13, 14)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from farmhand.errors import SpecError
from farmhand.spec import load_farm, parse_farm
from farmhand.spec.models import MAX_ROLE_NODES


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_farm(textwrap.dedent(text), "farm.toml")
    return [str(p) for p in caught.value.problems]


def test_a_count_beyond_any_farm_is_refused_naming_the_limit() -> None:
    found = problems('[roles.w]\ncommand = "x"\ncount = 1000000000\n')
    assert found == [f"farm.toml:3: roles.w.count: 1000000000 is more nodes than one role may have "
                     f"(at most {MAX_ROLE_NODES})"]
    assert problems('[roles.w]\ncommand = "x"\nmin = 1\nmax = 200000\n')[0].startswith("farm.toml:4: roles.w.max:")


def test_a_count_must_be_a_number_not_a_boolean() -> None:
    found = problems('[roles.w]\ncommand = "x"\ncount = true\n')
    assert len(found) == 1 and found[0].startswith("farm.toml:3: roles.w.count: True:")


def test_a_count_larger_than_every_hosts_capacity_together_is_refused() -> None:
    found = problems("""\
        [hosts.a]
        capacity = { nodes = 2 }
        [hosts.b]
        capacity = { nodes = 3 }
        [roles.w]
        command = "x"
        count = 6
        """)
    assert found == ["farm.toml:7: roles.w.count: 6 nodes do not fit: the hosts hold at most 5 (capacity.nodes)"]


def test_a_nul_in_the_environment_or_command_is_refused() -> None:
    found = problems('[roles.w]\ncommand = "x"\nenv = { A = "a\\u0000b" }\n')
    assert found == ["farm.toml:3: roles.w.env: the value of A contains a NUL character"]
    assert problems('[roles.w]\ncommand = "x\\u0000"\n') == [
        "farm.toml:2: roles.w.command: the command contains a NUL character"]
    assert "is not an environment variable name" in problems('[roles.w]\ncommand = "x"\nenv = { "A=B" = "1" }\n')[0]


def test_a_check_interval_of_zero_is_refused() -> None:
    found = problems('[roles.w]\ncommand = "x"\n[roles.w.health]\ntype = "tcp"\ninterval = "0s"\n')
    assert found == ["farm.toml:5: roles.w.health.interval: a check interval must be at least 100ms (it runs that often)"]
    assert "tick must be at least" in problems('[farm]\ntick = "0s"\n[roles.w]\ncommand = "x"\n')[0]


def test_a_balancer_on_the_api_address_is_refused() -> None:
    found = problems("""\
        [farm]
        api = "127.0.0.1:9400"
        [roles.w]
        command = "x"
        lb = { listen = "0.0.0.0:9400" }
        """)
    assert found == ["farm.toml:5: roles.w.lb.listen: 0.0.0.0:9400 is the farm's API address (farm.api)"]
    parse_farm('[farm]\napi = "127.0.0.1:0"\n[roles.w]\ncommand = "x"\nlb = { listen = "127.0.0.1:9400" }\n')


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    farm = tmp_path / "farm.toml"
    farm.write_bytes(b'[roles.w]\ncommand = "x"\n# caf\xe9\n')
    with pytest.raises(SpecError) as caught:
        load_farm(farm)
    assert [str(p) for p in caught.value.problems] == [
        f"{farm}:3: not UTF-8 text: byte 0xe9 cannot be decoded (save the file as UTF-8)"]
