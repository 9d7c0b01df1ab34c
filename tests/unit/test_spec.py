"""Farm files: what is accepted, and how every problem is named."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.errors import SpecError
from farmhand.spec import parse_farm
from farmhand.units import format_duration, parse_duration


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_farm(textwrap.dedent(text), "farm.toml")
    return [str(p) for p in caught.value.problems]


def test_a_minimal_farm_gets_one_local_host_and_defaults() -> None:
    spec = parse_farm('[roles.web]\ncommand = "app {port}"\n')
    assert list(spec.hosts) == ["local"] and spec.hosts["local"].driver == "local"
    role = spec.roles["web"]
    assert role.port == "auto" and role.initial_count == 1 and role.stop_signal == "TERM"


def test_durations_become_seconds() -> None:
    spec = parse_farm(textwrap.dedent("""\
        [roles.web]
        command = "app"
        stop_grace = "1500ms"
        health = { type = "tcp", interval = "2s", start_grace = "1m" }
        """))
    role = spec.roles["web"]
    assert role.stop_grace == 1.5
    assert role.health is not None and (role.health.interval, role.health.start_grace) == (2.0, 60.0)


def test_every_problem_is_reported_at_once_with_line_and_key() -> None:
    found = problems("""\
        [farm]
        name = "x"

        [roles.web]
        command = "app {port} {nope}"
        count = 2
        min = 1

        [roles.web.health]
        interval = "5x"
        fall = 0
        """)
    assert 'farm.toml:10: roles.web.health.interval: "5x" is not a duration (use forms like "500ms", "2s", "5m", "1h")' in found
    assert "farm.toml:11: roles.web.health.fall: 0: input should be greater than or equal to 1" in found
    assert any(p.startswith("farm.toml:5: roles.web.command: unknown placeholder {nope}") for p in found)


def test_count_and_bounds_exclude_each_other() -> None:
    assert problems('[roles.web]\ncommand = "x"\ncount = 2\nmin = 1\n') == [
        "farm.toml:1: roles.web: give either count, or min and max, not both"]
    assert "min (3) is above max (2)" in problems('[roles.web]\ncommand = "x"\nmin = 3\nmax = 2\n')[0]


def test_unknown_keys_suggest_the_right_one() -> None:
    assert problems('[roles.web]\ncommand = "x"\nstop_grase = "1s"\n') == [
        "farm.toml:3: roles.web.stop_grase: unknown key (did you mean 'stop_grace'?)"]
    assert problems('[farm]\nnmae = "x"\n') == ["farm.toml:2: farm.nmae: unknown key (did you mean 'name'?)"]


def test_inline_tables_point_at_their_line() -> None:
    assert problems('[roles.web]\ncommand = "x"\nhealth = { type = "smtp" }\n')[0].startswith(
        "farm.toml:3: roles.web.health.type:")


def test_toml_syntax_errors_have_a_line() -> None:
    assert problems('[roles.web]\ncommand = \n')[0].startswith("farm.toml:2: not valid TOML")


def test_whole_farm_checks() -> None:
    found = problems("""\
        [roles.a]
        command = "x"
        port = 8080
        count = 2
        lb = { listen = "127.0.0.1:9000" }
        [roles.b]
        command = "y"
        port = 8080
        lb = { listen = "127.0.0.1:9000" }
        require = { zone = "a" }
        """)
    text = "\n".join(found)
    assert 'fixed port 8080 cannot serve 2 nodes on one host; use port = "auto"' in text
    assert "port 8080 is also fixed by another role" in text
    assert "127.0.0.1:9000 is also the listener of another role" in text
    assert "roles.b.require.zone: no host has the label 'zone'" in text


def test_role_fingerprint_changes_with_command_and_env_only() -> None:
    base = parse_farm('[roles.web]\ncommand = "x"\ncount = 1\n').roles["web"]
    assert base.fingerprint() == parse_farm('[roles.web]\ncommand = "x"\ncount = 5\n').roles["web"].fingerprint()
    assert base.fingerprint() != parse_farm('[roles.web]\ncommand = "y"\n').roles["web"].fingerprint()
    assert base.fingerprint() != parse_farm('[roles.web]\ncommand = "x"\nenv = {A = "1"}\n').roles["web"].fingerprint()


@given(st.floats(min_value=0.001, max_value=100_000, allow_nan=False))
def test_durations_round_trip_closely(seconds: float) -> None:
    assert parse_duration(f"{seconds}s") == pytest.approx(seconds)
    assert format_duration(seconds)


@pytest.mark.parametrize("text", ["5", "5x", "", "s", "-1s", "1 d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
