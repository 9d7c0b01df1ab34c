"""HTTP/1.1 byte work that does not need a socket: head rewriting, canned answers, framing.

The proxy forwards the client's raw request head with two lines added (X-Forwarded-For and
X-Forwarded-Proto) rather than re-serialising parsed headers: FIELD-NOTES measured per-header
parsing as doubling the parse cost. A client-sent X-Forwarded-Proto is removed (it would let
a client claim https); a client-sent X-Forwarded-For is kept and ours is added as a further
line, which HTTP defines as the same as appending to the list.
"""

from __future__ import annotations

import httptools

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 << 10
"""A request head larger than this is refused with 431."""


def forwarded_lines(client_ip: str, proto: str = "http") -> bytes:
    """The lines inserted before a head's final CRLF, computed once per client connection."""
    return f"\r\nX-Forwarded-For: {client_ip}\r\nX-Forwarded-Proto: {proto}".encode("latin-1")


def rewrite_head(head: bytes, lines: bytes) -> bytes:
    """``head`` ends just before its final CRLF CRLF; returns it with ``lines`` appended."""
    lower = head.lower()
    if b"x-forwarded-proto" in lower:
        head = drop_header(head, lower, b"x-forwarded-proto")
    return head + lines


def drop_header(head: bytes, lower: bytes, name: bytes) -> bytes:
    """Remove every ``name:`` line from a head (``lower`` is ``head.lower()``)."""
    lines = head.split(b"\r\n")
    lower_lines = lower.split(b"\r\n")
    kept = [lines[0]] + [
        line
        for line, low in zip(lines[1:], lower_lines[1:], strict=True)
        if not (low.startswith(name) and low[len(name) : len(name) + 1] in (b":", b" ", b"\t"))
    ]
    return b"\r\n".join(kept)


def canned(status: int, reason: str, text: str) -> bytes:
    """A complete error response that closes the connection."""
    body = f"{text}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\n\r\n"
    ).encode() + body


BAD_REQUEST = canned(400, "Bad Request", "bad request")
REQUEST_TIMEOUT = canned(408, "Request Timeout", "request timeout")
TOO_LARGE = canned(413, "Content Too Large", "request too large")
HEAD_TOO_LARGE = canned(431, "Request Header Fields Too Large", "request head too large")
BAD_GATEWAY = canned(502, "Bad Gateway", "no backend could answer this request")
UNAVAILABLE = canned(503, "Service Unavailable", "no backend is available")
GATEWAY_TIMEOUT = canned(504, "Gateway Timeout", "the backend did not answer in time")


class _Completion:
    """Parser callbacks that only note that one message ended."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


def _completes(data: bytes) -> bool:
    probe = _Completion()
    parser = httptools.HttpRequestParser(probe)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return True
    except httptools.HttpParserError:
        pass  # a malformed *next* message does not undo the first one's completion
    return probe.complete


def first_request_length(data: bytes) -> int | None:
    """Length of the first complete request in ``data`` (pipelined clients), or None.

    Rare path: a parser cannot say where a message ended, so this finds the shortest prefix
    that a fresh parser accepts as a whole message, trying the head alone first (requests
    without a body) and bisecting otherwise.
    """
    start = len(data) - len(data.lstrip(b"\r\n"))
    head_end = data.find(HEAD_END, start)
    if head_end < 0:
        return None
    low = head_end + len(HEAD_END)
    if _completes(data[:low]):
        return low
    high = len(data)
    if not _completes(data):
        return None
    while low < high:
        middle = (low + high) // 2
        if _completes(data[:middle]):
            high = middle
        else:
            low = middle + 1
    return low
