"""The gate as a role's data plane, driven by the controller: polite clients reach the role's
SMTP nodes and see their banner; early talkers get the gate's refusal and reach no node."""

from __future__ import annotations

import smtplib
import socket
import sys
import textwrap
from collections.abc import Callable

import pytest
from gate_fixtures import Dns
from tests.integration.farmkit import Farm, free_port, wait_for

pytestmark = pytest.mark.slow



def test_a_gated_role_delivers_polite_mail_and_refuses_early_talkers(
        make_farm: Callable[..., Farm], dns_server: Dns) -> None:
    listen_port = free_port()
    farm = make_farm(textwrap.dedent(f"""\
        [roles.mx]
        command = "{sys.executable} -m aiosmtpd -n -l 127.0.0.1:{{port}}"
        count = 2
        health = {{ type = "tcp", interval = "200ms" }}

        [roles.mx.lb]
        listen = "127.0.0.1:{listen_port}"
        mode = "tcp"
        gate = "smtp-delay"

        [roles.mx.lb.gate_options]
        static_delay = "300ms"
        dynamic_delay = "300ms"
        mismatch_delay = "300ms"
        no_ptr_delay = "300ms"
        dns_server = "{dns_server.ip}:{dns_server.port}"
        dns_timeout = "1s"
        pass_cache_ttl = "0s"
        """))
    farm.up()
    wait_for(lambda: any(e["kind"] == "lb.ready" for e in farm.events()), 20, "the gate")

    with smtplib.SMTP("127.0.0.1", listen_port, timeout=20) as client:
        assert client.ehlo()[0] == 250
        client.sendmail("a@polite.test", ["b@farm.test"], "Subject: through the gate\r\n\r\nhello\r\n")

    with socket.create_connection(("127.0.0.1", listen_port), timeout=20) as bot:
        bot.sendall(b"EHLO bot\r\n")  # before the banner: an early talker
        answer = b""
        while chunk := bot.recv(4096):
            answer += chunk
    assert answer.startswith(b"451"), answer

    logs = "".join(farm.cli("logs", node["id"]).stdout for node in farm.nodes("mx"))
    assert logs.count("Subject: through the gate") == 1, "the polite mail reached exactly one node"
    assert "EHLO bot" not in logs and "bot" not in logs.lower(), "the early talker reached no node"
    classes = farm.status()["roles"][0]["lb_stats"]["classes"]  # the gate's per-class stats, in the API
    assert sum(c["passed"] for c in classes.values()) == 1
    assert sum(c["early_talkers"] for c in classes.values()) == 1
