"""HTTPS parts that need no socket: the tls table, the renewal schedule, what the plain
listener answers itself, HSTS insertion and HAProxy's TLS lines (issue 15)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farmhand.certs import schedule
from farmhand.lb.builtin import messages
from farmhand.lb.haproxy import config as hc
from farmhand.lb.settings import CertEntry, EngineSettings, TlsSettings
from farmhand.spec.models import LbSpec

DAY = 86400.0


def lb(**tls: object) -> LbSpec:
    return LbSpec.model_validate({"listen": "127.0.0.1:8080", "tls": {"listen": "127.0.0.1:8443", **tls}})


def test_tls_table_needs_one_source_of_certificates() -> None:
    assert lb(cert="a.crt", key="a.key").tls is not None
    assert lb(acme={"names": ["Example.org."]}).tls.acme.names == ("example.org",)  # type: ignore[union-attr]
    for bad, says in [
        ({}, "needs certificates"),
        ({"cert": "a.crt"}, "cert and key go together"),
        ({"cert": "a", "key": "b", "acme": {"names": ["x.org"]}}, "either certificate files or acme"),
        ({"acme": {"names": ["*.x.org"]}}, "DNS-01"),
        ({"acme": {"names": ["bad name"]}}, "not a DNS name"),
        ({"acme": {"names": ["x.org"], "directory": "http://x"}}, "https://"),
        ({"cert": "a", "key": "b", "listen": "127.0.0.1:8080"}, "must differ"),
    ]:
        with pytest.raises(ValidationError, match=says):
            lb(**bad)
    with pytest.raises(ValidationError, match="http balancers"):
        LbSpec.model_validate({"listen": "127.0.0.1:1", "mode": "tcp", "tls": {"listen": "127.0.0.1:2", "cert": "a", "key": "b"}})


@pytest.mark.parametrize(("not_before", "not_after", "now", "due"), [
    (0, 90 * DAY, 59 * DAY, False),   # more than a third left
    (0, 90 * DAY, 60 * DAY, True),    # a third left: renew
    (0, 90 * DAY, 100 * DAY, True),   # expired
    (0, 300.0, 199.0, False),         # Pebble-short certificates scale the same way
    (0, 300.0, 200.0, True),
])
def test_renew_when_a_third_of_the_lifetime_is_left(not_before: float, not_after: float, now: float, due: bool) -> None:
    assert schedule.is_due(schedule.Validity(not_before, not_after), now) is due


def test_failed_orders_back_off_and_never_come_before_due() -> None:
    assert schedule.is_due(None, 0.0)
    assert [schedule.retry_delay(n) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert schedule.retry_delay(50) == schedule.MAX_RETRY
    valid = schedule.Validity(0, 90 * DAY)
    assert schedule.next_attempt(valid, 0, None, 0.0) == 60 * DAY
    assert schedule.next_attempt(None, 2, 100.0, 110.0) == 160.0
    assert schedule.next_attempt(None, 0, None, 5.0) == 5.0


def test_plain_listener_answers_challenges_and_redirects() -> None:
    head = b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x.org"
    answer = messages.plain_answer(head, {"tok": "tok.key"}, None)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\ntok.key")
    assert messages.plain_answer(b"GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: x.org", {"tok": "k"}, None) == messages.NOT_FOUND
    assert messages.plain_answer(b"GET /page HTTP/1.1\r\nHost: x.org", {"tok": "k"}, None) is None
    moved = messages.plain_answer(b"GET /a?b=1 HTTP/1.1\r\nHost: x.org:8080", {}, 443)
    assert moved is not None and b"\r\nLocation: https://x.org/a?b=1\r\n" in moved and moved.startswith(b"HTTP/1.1 301")
    assert messages.plain_answer(b"GET / HTTP/1.1\r\nAccept: */*", {}, 443) == messages.BAD_REQUEST


def test_hsts_goes_after_the_status_line() -> None:
    line = messages.hsts_line(60)
    assert messages.with_header_line(b"HTTP/1.1 200 OK\r\nA: 1\r\n\r\n", line) == (
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=60\r\nA: 1\r\n\r\n")
    assert messages.with_header_line(b"HTTP/1.1 2", line) == b"HTTP/1.1 2"


def test_haproxy_config_has_the_https_bind_and_intermediate_settings() -> None:
    tls = TlsSettings("127.0.0.1", 8443, (CertEntry("/s/cert-0.pem", ("a.org",)),), redirect_http=True, hsts_seconds=60)
    settings = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=8080, tls=tls)
    text = hc.render(settings, "/run", [])
    assert "bind 127.0.0.1:8443 ssl crt-list /run/certs.list alpn http/1.1" in text
    assert "ssl-min-ver TLSv1.2 no-tls-tickets" in text
    assert "X-Forwarded-Proto https if { ssl_fc }" in text
    assert "code 301 if !{ ssl_fc } !acme_path" in text and '"max-age=60"' in text
    assert hc.crt_list(settings) == "/s/cert-0.pem\n"
    assert "ssl" not in hc.render(settings.with_tls(None), "/run", [])
    assert settings.with_tls(None).restart_key() == settings.with_tls(None).restart_key()[:5]
    assert EngineSettings.from_json(settings.to_json()) == settings
