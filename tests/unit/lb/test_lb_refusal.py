"""``messages.suspect`` and ``messages.refusal``: which heads the builtin engine refuses
beyond its parser (issue 10 #8), as a table."""

from __future__ import annotations

import pytest

from farmhand.lb.builtin import messages


def head(text: str) -> bytes:
    return text.replace("|", "\r\n").encode()


CASES = [
    ("GET / HTTP/1.1|Host: x", None),
    ("GET / HTTP/1.1|Host: x|Host: y", messages.BAD_REQUEST),
    ("GET / HTTP/1.1|Host: x|host: x", messages.BAD_REQUEST),
    ("POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked", None),
    ("POST / HTTP/1.1|Host: x|Transfer-Encoding: identity, chunked", messages.UNSUPPORTED_CODING),
    ("POST / HTTP/1.1|Host: x|Transfer-Encoding: gzip|Transfer-Encoding: chunked", messages.UNSUPPORTED_CODING),
    ("POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked, gzip", messages.BAD_REQUEST),
    ("POST / HTTP/1.1|Host: x|Transfer-Encoding: chunked|Transfer-Encoding: chunked", messages.BAD_REQUEST),
    ("GET http://x/ HTTP/1.1|Host: x", None),
    ("GET http://X:80/p?q HTTP/1.1|Host: x", None),
    ("GET https://x:443/ HTTP/1.1|Host: x", None),
    ("GET http://x/ HTTP/1.1|Host: x:80", None),
    ("GET http://user@x/ HTTP/1.1|Host: x", None),
    ("GET http://x/ HTTP/1.1", None),
    ("GET http://y/ HTTP/1.1|Host: x", messages.MISDIRECTED),
    ("GET http://x:8080/ HTTP/1.1|Host: x", messages.MISDIRECTED),
    ("GET ftp://x/ HTTP/1.1|Host: x", messages.BAD_REQUEST),
    ("CONNECT x:443 HTTP/1.1|Host: x:443", None),
    ("CONNECT y:443 HTTP/1.1|Host: x:443", messages.MISDIRECTED),
    ("OPTIONS * HTTP/1.1|Host: x", None),
]


@pytest.mark.parametrize(("text", "answer"), CASES)
def test_refusal(text: str, answer: bytes | None) -> None:
    raw = head(text)
    assert messages.refusal(raw, raw.lower()) == answer
    if answer is not None:
        assert messages.suspect(raw, raw.lower()), "the hot path must look closer at this head"


def test_an_ordinary_head_is_not_suspect() -> None:
    raw = head("GET /index.html HTTP/1.1|Host: x|Accept: */*|Content-Length: 0")
    assert not messages.suspect(raw, raw.lower())
