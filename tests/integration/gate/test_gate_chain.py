"""smtp-delay in real ucspi-tcp chains: tcpserver + smtp-delay + rblsmtpd + a sink backend,
with swaks and smtplib as polite clients and raw sockets as early talkers."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import time

import pytest
from gate_fixtures import CLIENT, Chain

pytestmark = pytest.mark.slow

DELAYS = {"static": 0.3, "dynamic": 0.5, "mismatch": 0.7, "no_ptr": 0.9}
OPTIONS = ["-d", "0.3", "-D", "0.5", "-P", "0.7", "-N", "0.9", "-t", "2"]


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def early_talk(chain: Chain, source: str, lines: bytes) -> bytes:
    with socket.create_connection((chain.host, chain.port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(lines)
        return read_all(sock)


def polite_smtplib(chain: Chain, source: str) -> float:
    """Deliver one mail; returns the seconds from connect to the banner."""
    started = time.monotonic()
    with smtplib.SMTP(timeout=20, source_address=(source, 0)) as client:
        code, banner = client.connect(chain.host, chain.port)
        waited = time.monotonic() - started
        assert code == 220 and b"sink.test" in banner
        client.sendmail("a@polite.test", ["b@sink.test"], f"Subject: from {source}\r\n\r\nhello\r\n")
    return waited


@pytest.mark.parametrize("klass", ["static", "dynamic", "mismatch", "no_ptr", "servfail"])
def test_each_class_waits_its_delay_then_delivers(start_chain, klass: str) -> None:
    chain = start_chain(OPTIONS)
    expected_class = "mismatch" if klass == "servfail" else klass
    waited = polite_smtplib(chain, CLIENT[klass])
    assert waited >= DELAYS[expected_class]
    [line] = chain.wait_for_verdicts(1)
    assert f"class={expected_class}" in line and "verdict=pass" in line
    assert [b"from " + CLIENT[klass].encode() in mail for mail in chain.mails()] == [True]


def test_swaks_delivers_through_the_chain(start_chain) -> None:
    chain = start_chain(OPTIONS)
    result = subprocess.run(
        ["swaks", "--server", f"{chain.host}:{chain.port}", "--local-interface", CLIENT["static"],
         "--to", "b@sink.test", "--from", "a@polite.test", "--header", "Subject: swaks", "--timeout", "20"],
        capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert len(chain.mails()) == 1 and b"Subject: swaks" in chain.mails()[0]


@pytest.mark.parametrize(("flags", "code"), [([], b"451 "), (["-b"], b"553 ")])
def test_early_talker_gets_rblsmtpd_refusal_and_reaches_no_backend(start_chain, flags, code) -> None:
    chain = start_chain([*OPTIONS, *flags])
    answer = early_talk(chain, CLIENT["no_ptr"],
                        b"EHLO bot\r\nMAIL FROM:<x@bot.test>\r\nRCPT TO:<y@sink.test>\r\nQUIT\r\n")
    assert b"rblsmtpd" in answer and code + b"Too early" in answer
    [line] = chain.wait_for_verdicts(1)
    assert "verdict=talker" in line and "class=no_ptr" in line
    chain.wait_for_ends(1)
    assert chain.runs() == [] and chain.mails() == []


@pytest.mark.parametrize(("flags", "code"), [([], b"451 4.7.1 "), (["-b"], b"553 5.7.1 ")])
def test_standalone_answers_early_talkers_itself(start_chain, flags, code) -> None:
    chain = start_chain(["-S", *OPTIONS, *flags], rblsmtpd=False)
    answer = early_talk(chain, CLIENT["dynamic"], b"EHLO bot\r\nMAIL FROM:<x@bot.test>\r\n")
    assert answer.startswith(code + b"Too early")
    chain.wait_for_ends(1)
    assert chain.runs() == []


def test_standalone_reply_survives_a_client_that_keeps_talking(start_chain) -> None:
    """Drain before close: unread input at close would reset the connection and lose the reply."""
    chain = start_chain(["-S", *OPTIONS], rblsmtpd=False)
    with socket.create_connection((chain.host, chain.port), timeout=10,
                                  source_address=(CLIENT["static"], 0)) as sock:
        sock.sendall(b"EHLO bot\r\n" + b"X" * 200_000)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).startswith(b"451 ")


def test_client_that_hangs_up_runs_nothing(start_chain) -> None:
    chain = start_chain(OPTIONS)
    with socket.create_connection((chain.host, chain.port), timeout=10, source_address=(CLIENT["dynamic"], 0)):
        pass
    [line] = chain.wait_for_verdicts(1)
    assert "verdict=hangup" in line and "class=dynamic" in line
    chain.wait_for_ends(1)
    assert chain.runs() == []


def test_relayclient_skips_the_delay(start_chain) -> None:
    chain = start_chain(OPTIONS, extra_env={"RELAYCLIENT": ""})
    polite_smtplib(chain, CLIENT["no_ptr"])
    [line] = chain.wait_for_verdicts(1)
    assert "verdict=skip" in line and "why=relayclient" in line


def test_ipv6_client(start_chain) -> None:
    chain = start_chain(OPTIONS, host="::1")
    started = time.monotonic()
    with smtplib.SMTP(timeout=20) as client:
        code, _ = client.connect("::1", chain.port)
        assert code == 220
        assert time.monotonic() - started >= DELAYS["static"]
        client.sendmail("a@polite.test", ["b@sink.test"], "Subject: v6\r\n\r\nhello\r\n")
    [line] = chain.wait_for_verdicts(1)
    assert "ip=::1" in line and "name=mx6.polite.test" in line and "class=static" in line


def test_ipv6_early_talker(start_chain) -> None:
    chain = start_chain(OPTIONS, host="::1")
    with socket.create_connection(("::1", chain.port), timeout=10) as sock:
        sock.sendall(b"EHLO bot\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@sink.test>\r\nQUIT\r\n")
        assert b"451 Too early" in read_all(sock)
    chain.wait_for_ends(1)
    assert chain.runs() == []
