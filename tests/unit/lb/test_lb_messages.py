"""Head rewriting and request framing for the http proxy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from farmhand.lb.builtin.messages import first_request_length, forwarded_lines, rewrite_head

XFF = forwarded_lines("192.0.2.1")


def test_forwarded_lines_are_added_before_the_end_of_the_head() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x"
    assert rewrite_head(head, XFF) + b"\r\n\r\n" == (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n"
    )


def test_a_client_cannot_claim_its_own_proto_but_its_forwarded_for_is_kept() -> None:
    head = b"GET / HTTP/1.1\r\nx-FORWARDED-proto: https\r\nX-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Protocol: z"
    out = rewrite_head(head, XFF)
    assert b"https" not in out
    assert b"X-Forwarded-For: 10.1.1.1\r\n" in out
    assert b"X-Forwarded-Protocol: z\r\n" in out  # a different header, left alone
    assert out.endswith(XFF)


def test_a_path_mentioning_the_header_is_not_touched() -> None:
    head = b"GET /x-forwarded-proto HTTP/1.1\r\nHost: x"
    assert rewrite_head(head, XFF) == head + XFF


GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def test_first_request_length_of_pipelined_requests() -> None:
    for first in (GET, POST, CHUNKED):
        for second in (GET, POST, CHUNKED, b"GET /partial HT"):
            assert first_request_length(first + second) == len(first)


def test_first_request_length_of_an_incomplete_request_is_none() -> None:
    assert first_request_length(POST[:-2]) is None
    assert first_request_length(b"GET / HTTP/1.1\r\nHost") is None


@given(st.lists(st.sampled_from([GET, POST, CHUNKED]), min_size=1, max_size=5), st.binary(max_size=20))
def test_first_request_length_finds_the_first_whatever_follows(requests: list[bytes], tail: bytes) -> None:
    data = b"".join(requests) + tail
    assert first_request_length(data) == len(requests[0])
