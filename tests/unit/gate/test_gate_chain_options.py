"""smtp-delay's command line and environment, read into records. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.errors import GateError
from farmhand.gate.chain_options import MissingRemoteIp, parse_args, read_client
from farmhand.gate.policy import DEFAULT_DELAYS, GateUsageError


def test_defaults() -> None:
    options = parse_args(["rblsmtpd", "qmail-smtpd"])
    assert options.policy.delays == DEFAULT_DELAYS
    assert options.program == ("rblsmtpd", "qmail-smtpd")
    assert not (options.standalone or options.verbose or options.policy.permanent)


def test_every_option() -> None:
    options = parse_args(["-d", "1", "-D", "2.5", "-P", "3", "-N", "0", "-r", "dsl", "-r", "pool",
                          "-t", "1.5", "-m", "go away", "-b", "-S", "-v", "rblsmtpd", "-r", "zen.example"])
    assert options.policy.delays == {"static": 1.0, "dynamic": 2.5, "mismatch": 3.0, "no_ptr": 0.0}
    assert options.policy.rules.patterns is not None and len(options.policy.rules.patterns) == 2
    assert options.dns_timeout == 1.5
    assert options.policy.rblsmtpd_value() == "-go away"
    assert options.policy.reply() == b"553 5.7.1 go away\r\n"
    assert options.standalone and options.verbose
    assert options.program == ("rblsmtpd", "-r", "zen.example")  # the next program's options untouched


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no program to run"),
        (["-d"], "option -d requires argument"),
        (["-x", "prog"], "option -x not recognized"),
        (["-d", "300", "prog"], "300s is refused"),
        (["-N", "-1", "prog"], "not a delay"),
        (["-D", "nan", "prog"], "not a number of seconds"),
        (["-P", "two", "prog"], "not a number of seconds"),
        (["-r", "[", "prog"], "not a regular expression"),
        (["-t", "0", "prog"], "DNS timeout"),
        (["-m", "two\r\nlines", "prog"], "one non-empty line"),
    ],
)
def test_usage_errors_say_what_to_fix(argv: list[str], message: str) -> None:
    with pytest.raises(GateUsageError, match=message) as caught:
        parse_args(argv)
    assert isinstance(caught.value, GateError)


seconds = st.floats(min_value=0, max_value=299.999, allow_nan=False).map(lambda f: round(f, 3))


@given(st.dictionaries(st.sampled_from(["-d", "-D", "-P", "-N"]), seconds), st.booleans(), st.booleans())
def test_valid_delays_are_read_back_exactly(flags: dict[str, float], permanent: bool, standalone: bool) -> None:
    argv = [part for flag, value in flags.items() for part in (flag, repr(value))]
    argv += ["-b"] * permanent + ["-S"] * standalone + ["prog"]
    options = parse_args(argv)
    names = {"-d": "static", "-D": "dynamic", "-P": "mismatch", "-N": "no_ptr"}
    for flag, value in flags.items():
        assert options.policy.delays[names[flag]] == value  # type: ignore[index]
    assert options.policy.permanent == permanent and options.standalone == standalone


@given(st.lists(st.text(max_size=8), max_size=6))
def test_any_argv_parses_or_raises_a_usage_error(argv: list[str]) -> None:
    try:
        parse_args(argv)
    except GateUsageError:
        pass


@given(st.floats(min_value=300, allow_infinity=True, allow_nan=False) | st.floats(max_value=-1e-9))
def test_out_of_range_delays_are_refused(value: float) -> None:
    with pytest.raises(GateUsageError):
        parse_args(["-d", repr(value), "prog"])


@pytest.mark.parametrize(
    ("env", "ip", "host", "skip"),
    [
        ({"TCPREMOTEIP": "192.0.2.1"}, "192.0.2.1", None, None),
        ({"PROTO": "TCP", "TCPREMOTEIP": "192.0.2.1", "TCPREMOTEHOST": "mx.example"}, "192.0.2.1", "mx.example", None),
        ({"PROTO": "TCP6", "TCP6REMOTEIP": "::ffff:192.0.2.1"}, "192.0.2.1", None, None),
        ({"PROTO": "TCP6", "TCP6REMOTEIP": "2001:db8::1", "TCP6REMOTEHOST": "v6.example"}, "2001:db8::1", "v6.example", None),
        ({"TCPREMOTEIP": "192.0.2.1", "RELAYCLIENT": ""}, "192.0.2.1", None, "relayclient"),
        ({"TCPREMOTEIP": "192.0.2.1", "RBLSMTPD": ""}, "192.0.2.1", None, "rblsmtpd"),
        ({"TCPREMOTEIP": "192.0.2.1", "RBLSMTPD": "-blocked"}, "192.0.2.1", None, "rblsmtpd"),
        ({"TCPREMOTEIP": "192.0.2.1", "TCPREMOTEHOST": ""}, "192.0.2.1", None, None),
    ],
)
def test_reading_the_client_from_tcpserver_variables(env, ip, host, skip) -> None:
    client = read_client(env)
    assert (client.ip, client.host, client.skip) == (ip, host, skip)


@pytest.mark.parametrize("env", [{}, {"TCPREMOTEIP": ""}, {"TCPREMOTEIP": "nonsense"}])
def test_no_usable_remote_ip(env: dict[str, str]) -> None:
    with pytest.raises(MissingRemoteIp, match="TCPREMOTEIP"):
        read_client(env)
