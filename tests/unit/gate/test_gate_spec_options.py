"""``gate_options`` in the farm file: validation, defaults shared with smtp-delay, JSON round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.errors import SpecError
from farmhand.gate import policy
from farmhand.gate.config import GateConfig, GateSettings
from farmhand.spec import parse_farm
from farmhand.spec.gate import GateOptions
from farmhand.spec.types import duration_text
from farmhand.units import parse_duration

FARM = """
[roles.mx]
command = "sink {{port}}"
[roles.mx.lb]
listen = "127.0.0.1:2525"
mode = "tcp"
gate = "smtp-delay"
gate_options = {{ {options} }}
"""


def test_defaults_match_the_smtp_delay_command() -> None:
    options = GateOptions()
    assert {"static": options.static_delay, "dynamic": options.dynamic_delay, "mismatch": options.mismatch_delay,
            "no_ptr": options.no_ptr_delay} == policy.DEFAULT_DELAYS
    assert options.reject_text == policy.DEFAULT_REJECT_TEXT and options.dns_timeout == policy.DEFAULT_DNS_TIMEOUT
    from farmhand.spec import gate as spec_gate

    assert (spec_gate.MAX_DELAY, spec_gate.WARN_DELAY) == (policy.MAX_DELAY, policy.WARN_DELAY)


def test_a_farm_file_with_gate_options() -> None:
    spec = parse_farm(FARM.format(options='static_delay = "1s", allowlist = ["10.0.0.0/8", "example.com"], '
                                          'dns_server = "127.0.0.1:5353", metrics_listen = "[::1]:9125"'))
    options = spec.roles["mx"].lb.gate_options  # type: ignore[union-attr]
    assert options.static_delay == 1.0 and options.allowlist == ("10.0.0.0/8", "example.com")
    settings = GateSettings.from_options(options)
    assert settings.dns_servers == [("127.0.0.1", 5353)] and settings.allowlist.allows_address("10.1.2.3")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('static_dely = "1s"', "did you mean 'static_delay'"),
        ('no_ptr_delay = "5m"', "300s is refused"),
        ("no_ptr_delay = 5", 'write it with a unit, such as "5s"'),
        ('dynamic_patterns = ["("]', "is not a regular expression"),
        ('allowlist = ["bad name!"]', "neither a CIDR"),
        ('dns_server = "dns.example"', "is not an address"),
        ('metrics_listen = "127.0.0.1"', "needs a port"),
        ('reject_drain = "2m"', "reject_drain over 60s"),
    ],
)
def test_bad_options_are_named_with_their_line(options: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_farm(FARM.format(options=options))
    assert "farm.toml:8: roles.mx.lb.gate_options" in str(caught.value)


def test_warnings_for_long_delays() -> None:
    assert GateOptions.model_validate({"no_ptr_delay": "45s"}).warnings() == [
        "no_ptr_delay = 45s is over 30s: some clients give up before that"]


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_duration_text_reads_back_to_the_microsecond(seconds: float) -> None:
    assert abs(parse_duration(duration_text(seconds)) - seconds) <= 1e-6 * max(1.0, seconds) + 5e-7


@given(st.builds(GateOptions, static_delay=st.sampled_from(["0s", "250ms", "2s", "29.5s"]),
                 permanent=st.booleans(), allowlist=st.lists(st.sampled_from(["192.0.2.0/24", "example.com"]))
                 .map(tuple)))
def test_the_config_file_round_trips(options: GateOptions) -> None:
    config = GateConfig("mx", "127.0.0.1:25", "/tmp/x", 2.0, 30.0, options)
    again = GateConfig.from_json(config.to_json())
    assert again == config and again.options_hash() == config.options_hash()
