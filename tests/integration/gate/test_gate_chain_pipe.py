"""smtp-delay run directly with pipes for fd 0 and 1 (no tcpserver): exit codes, its own DNS
lookup through $DNSCACHEIP, and the next program seeing every byte an early talker sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from gate_fixtures import CLIENT, Dns, venv_bin

pytestmark = pytest.mark.slow

SHOW = [sys.executable, "-c",
        "import os,sys; print('RBLSMTPD=' + os.environ.get('RBLSMTPD', '<unset>')); "
        "sys.stdout.flush(); sys.stdout.buffer.write(sys.stdin.buffer.read())"]


def run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run smtp-delay with ``stdin`` written to its pipe and then closed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "RELAYCLIENT", "RBLSMTPD"))}
    return subprocess.run([venv_bin("smtp-delay"), *args], input=stdin, capture_output=True,
                          env={**clean, **env}, timeout=30)


def test_missing_remote_ip_exits_111_and_writes_nothing() -> None:
    result = run(["-d", "0.1", *SHOW], {})
    assert result.returncode == 111
    assert result.stdout == b"" and b"TCPREMOTEIP is not set" in result.stderr


@pytest.mark.parametrize("args", [["-d", "300", "x"], ["-d", "soon", "x"], ["-q", "x"], ["-d", "1"],
                                  ["-r", "(", "x"], ["-t", "0", "x"]])
def test_usage_errors_exit_100(args: list[str]) -> None:
    result = run(args, {"TCPREMOTEIP": "127.0.0.1"})
    assert result.returncode == 100
    assert b"usage: smtp-delay" in result.stderr and result.stdout == b""


def test_over_thirty_seconds_is_warned_about() -> None:
    result = run(["-d", "31", *SHOW], {"TCPREMOTEIP": "127.0.0.1", "RELAYCLIENT": ""})
    assert result.returncode == 0 and b"warning: the static delay of 31s" in result.stderr


def test_early_talker_on_a_pipe_passes_every_byte_on(dns_server: Dns) -> None:
    said = b"EHLO bot\r\nMAIL FROM:<a@b.test>\r\n"
    result = run(["-v", "-N", "5", "-b", *SHOW], {"TCPREMOTEIP": CLIENT["no_ptr"], "DNSCACHEIP": dns_server.ip},
                 stdin=said)
    assert result.returncode == 0
    first, rest = result.stdout.split(b"\n", 1)
    assert first == b"RBLSMTPD=-Too early: wait for the greeting before you talk (early talker)"
    assert rest == said
    assert b"class=no_ptr" in result.stderr and b"verdict=talker" in result.stderr


def test_hangup_on_a_pipe_runs_nothing(dns_server: Dns) -> None:
    result = run(["-v", "-P", "5", *SHOW], {"TCPREMOTEIP": CLIENT["servfail"], "DNSCACHEIP": dns_server.ip})
    assert result.returncode == 0 and result.stdout == b""
    assert b"class=mismatch" in result.stderr and b"verdict=hangup" in result.stderr


def test_quiet_pipe_client_gets_the_program_with_environment_untouched(dns_server: Dns) -> None:
    env = {"TCPREMOTEIP": CLIENT["mismatch"], "DNSCACHEIP": dns_server.ip}
    started = time.monotonic()
    process = subprocess.Popen([venv_bin("smtp-delay"), "-v", "-P", "0.4", *SHOW], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**{k: v for k, v in os.environ.items() if k != "RBLSMTPD"}, **env})
    try:
        assert process.stdout is not None and process.stdin is not None
        first = process.stdout.readline()
        assert time.monotonic() - started >= 0.4
        assert first == b"RBLSMTPD=<unset>\n"
        process.stdin.write(b"EHLO polite\r\n")
        process.stdin.close()
        assert process.stdout.read() == b"EHLO polite\r\n"
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        log = process.stderr.read()
        assert b"name=forged.example.test" in log and b"class=mismatch" in log and b"verdict=pass" in log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr, process.stdin):
            if stream is not None:
                stream.close()


def test_standalone_on_a_pipe_answers_and_closes(dns_server: Dns) -> None:
    result = run(["-S", "-d", "5", *SHOW], {"TCPREMOTEIP": "127.0.0.1", "TCPREMOTEHOST": "mx.polite.test"},
                 stdin=b"EHLO bot\r\n")
    assert result.returncode == 0
    assert result.stdout == b"451 4.7.1 Too early: wait for the greeting before you talk (early talker)\r\n"


def test_tcp6_variables_and_mapped_addresses() -> None:
    env = {"PROTO": "TCP6", "TCP6REMOTEIP": "::ffff:127.0.0.1", "TCP6REMOTEHOST": "mx.polite.test"}
    result = run(["-v", "-d", "0", *SHOW], env)
    assert b"ip=127.0.0.1 " in result.stderr and b"name=mx.polite.test" in result.stderr
