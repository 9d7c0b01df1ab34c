"""The head rewrites that let a closing client's request ride a pooled backend connection
(``messages.backend_keep_open``) and tell that client its connection closes
(``messages.closing_response``)."""

from __future__ import annotations

import pytest

from farmhand.lb.builtin.messages import backend_keep_open, closing_response


@pytest.mark.parametrize(("head", "sent"), [
    (b"GET / HTTP/1.0", b"GET / HTTP/1.0\r\nConnection: keep-alive"),
    (b"GET / HTTP/1.0\r\nHost: x\r\nConnection: close", b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close", b"GET / HTTP/1.1\r\nHost: x"),
    (b"GET / HTTP/1.1\r\nConnection: close\r\nHost: x", b"GET / HTTP/1.1\r\nHost: x"),
    (b"GET /connection HTTP/1.1\r\nHost: x\r\nX-Connection-Id: 7\r\nConnection: close",
     b"GET /connection HTTP/1.1\r\nHost: x\r\nX-Connection-Id: 7"),
])
def test_a_closing_request_asks_the_backend_to_stay_open(head: bytes, sent: bytes) -> None:
    assert backend_keep_open(head, head.lower()) == sent


@pytest.mark.parametrize(("first", "given"), [
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
     b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"),
    (b"HTTP/1.1 200 OK\r\nContent-Len", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Len"),
    (b"HTTP/1.1 20", b"HTTP/1.1 20"),
    (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"),
])
def test_the_closing_client_is_told_so(first: bytes, given: bytes) -> None:
    assert closing_response(first) == given
