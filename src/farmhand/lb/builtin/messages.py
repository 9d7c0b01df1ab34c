"""HTTP/1.1 byte work that does not need a socket: head rewriting, canned answers, framing.

The proxy forwards the client's raw request head with two lines added (X-Forwarded-For and
X-Forwarded-Proto) rather than re-serialising parsed headers: FIELD-NOTES measured per-header
parsing as doubling the parse cost. A client-sent X-Forwarded-Proto is removed (it would let
a client claim https); a client-sent X-Forwarded-For is kept and ours is added as a further
line, which HTTP defines as the same as appending to the list.

Heads the parser accepts but HAProxy refuses (two Host lines, codings other than chunked,
an absolute URI naming another host) are caught by ``suspect`` (cheap, every request) and
``refusal`` (only for the rare heads ``suspect`` flags).
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
MISDIRECTED = canned(400, "Bad Request", "the request names two different hosts")
UNSUPPORTED_CODING = canned(422, "Unprocessable Content", "transfer codings other than chunked are not supported")
REQUEST_TIMEOUT = canned(408, "Request Timeout", "request timeout")
TOO_LARGE = canned(413, "Content Too Large", "request too large")
HEAD_TOO_LARGE = canned(431, "Request Header Fields Too Large", "request head too large")
BAD_GATEWAY = canned(502, "Bad Gateway", "no backend could answer this request")
UNAVAILABLE = canned(503, "Service Unavailable", "no backend is available")
GATEWAY_TIMEOUT = canned(504, "Gateway Timeout", "the backend did not answer in time")


_DEFAULT_PORTS = {b"http": b":80", b"https": b":443"}


def suspect(head: bytes, lower: bytes) -> bool:
    """Cheap test (hot path): does this head need ``refusal``'s closer look?

    True for a second ``Host`` line, any ``Transfer-Encoding`` (the parser already refuses
    most bad ones) and a request target that is not a plain path (absolute form, CONNECT).
    """
    return (
        head[head.find(b" ") + 1] != 47  # "/"
        or b"\ntransfer-encoding:" in lower
        or lower.count(b"\nhost:") > 1
    )


def refusal(head: bytes, lower: bytes) -> bytes | None:
    """The error answer for a head HAProxy refuses and the parser lets through, else None.

    Matching HAProxy 2.6 (checked against the real binary) and RFC 9112:

    - more than one ``Host`` line: 400 (RFC 9112 §3.2; HAProxy lets identical ones pass);
    - ``Transfer-Encoding`` whose codings are not exactly one final ``chunked``: 400 when
      chunked is missing, repeated or not last (RFC 9112 §6.3), 422 when other codings come
      before it (HAProxy's answer: it applies no coding but chunked);
    - an absolute-form target (``http://host/...``) whose scheme is not http(s), or whose
      authority (without userinfo, default port ignored) differs from ``Host``: 400, and so
      for a CONNECT target that differs from ``Host`` (RFC 9112 §3.2.2).
    """
    lines = lower.split(b"\r\n")
    hosts = [line[5:].strip() for line in lines[1:] if line.startswith(b"host:")]
    if len(hosts) > 1:
        return BAD_REQUEST
    codings = [
        coding.strip()
        for line in lines[1:] if line.startswith(b"transfer-encoding:")
        for coding in line[18:].split(b",")
    ]
    if codings:
        if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            return BAD_REQUEST
        if len(codings) > 1:
            return UNSUPPORTED_CODING
    method, _, rest = lines[0].partition(b" ")
    target = rest.rpartition(b" ")[0]
    if target.startswith(b"/") or target == b"*":
        return None
    if method == b"connect":
        authority, scheme = target, b""
    else:
        scheme, sep, after = target.partition(b"://")
        if not sep:
            return None  # not absolute form; the backend judges it
        if scheme not in _DEFAULT_PORTS:
            return BAD_REQUEST
        authority = after
        for stop in (b"/", b"?", b"#"):
            authority = authority.split(stop, 1)[0]
        authority = authority.rpartition(b"@")[2]
    if not hosts or not authority:
        return None
    default = _DEFAULT_PORTS.get(scheme)
    host = hosts[0]
    if default is not None:
        authority = authority.removesuffix(default)
        host = host.removesuffix(default)
    return None if authority == host else MISDIRECTED


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


# -- HTTPS beside plain HTTP (issue 15): what the plain listener answers itself, and HSTS.

ACME_PREFIX = b"/.well-known/acme-challenge/"


def hsts_line(max_age: int) -> bytes:
    """The header line added after a response's status line on the HTTPS listener."""
    return f"Strict-Transport-Security: max-age={max_age}\r\n".encode()


def with_header_line(data: bytes, line: bytes) -> bytes:
    """``data`` (a response's first bytes) with ``line`` inserted after its status line.

    A status line cut before its CRLF (a backend writing a byte at a time) is left as it is:
    that response goes without the line rather than being held back."""
    end = data.find(b"\r\n")
    if end < 0:
        return data
    return data[: end + 2] + line + data[end + 2 :]


def plain_answer(head: bytes, challenges: dict[str, str], redirect_port: int | None) -> bytes | None:
    """What the plain listener answers itself, or None to proxy the request as usual.

    An ACME HTTP-01 request for a token the balancer holds gets its key authorization
    (RFC 8555 §8.3); with ``redirect_port`` every other request gets a 301 to the same host
    and path over HTTPS (an unknown challenge token too: a 404 says more than a redirect).
    """
    line_end = head.find(b"\r\n")
    parts = head[: line_end if line_end >= 0 else len(head)].split(b" ")
    if len(parts) != 3:
        return None
    target = parts[1]
    if target.startswith(ACME_PREFIX):
        answer = challenges.get(target[len(ACME_PREFIX):].decode("latin-1"))
        if answer is not None:
            body = answer.encode()
            return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\nCache-Control: no-store\r\n\r\n" % len(body)) + body
        if redirect_port is not None or challenges:
            return NOT_FOUND
        return None
    if redirect_port is None:
        return None
    host = header_value(head, b"host")
    if not host:
        return BAD_REQUEST
    name = host.rsplit(b":", 1)[0] if not host.endswith(b"]") else host
    port = b"" if redirect_port == 443 else b":%d" % redirect_port
    location = b"https://" + name + port + (target if target.startswith(b"/") else b"/")
    return (b"HTTP/1.1 301 Moved Permanently\r\nLocation: " + location +
            b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The first ``name:`` header's value in a head (``name`` lower-case), or None."""
    lower = head.lower()
    at = lower.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


NOT_FOUND = canned(404, "Not Found", "no such ACME challenge")


_KEEP_OPEN_1_0 = b"\r\nConnection: keep-alive"
_CLOSE_LINE = b"Connection: close\r\n"


def backend_keep_open(head: bytes, lower: bytes) -> bytes:
    """A closing client's request head (``Connection: close``, or HTTP/1.0 without
    keep-alive) as it goes to a pooled backend connection: its Connection lines dropped (they
    are hop-by-hop: they speak of the client's connection, not ours) and, for HTTP/1.0,
    ``Connection: keep-alive`` asked for.

    Why: a closing client costs a new TLS handshake already; it should not cost a new
    backend connection too. HAProxy keeps its server connections across such requests, and
    a proxy that opens one per request pays a connect, an accept and a close each time
    (``head`` ends just before its final CRLF CRLF, as in ``rewrite_head``)."""
    if b"connection" in lower:
        head = drop_header(head, lower, b"connection")
    line_end = head.find(b"\r\n")
    request_line = head if line_end < 0 else head[:line_end]
    if request_line.endswith(b"HTTP/1.0"):
        head += _KEEP_OPEN_1_0
    return head


def closing_response(data: bytes) -> bytes:
    """A response's first bytes as its closing client gets them: the backend's Connection
    lines (a ``keep-alive`` it gave our pooled connection) replaced by ``Connection: close``,
    which is what the proxy does after this response.

    A head not whole in these bytes (rare: a backend writing it in pieces) gets the close
    line added after its status line and keeps its own; ``close`` among the tokens wins
    (RFC 9112 §9.6). An interim answer (1xx) is left alone: the final one follows."""
    line_end = data.find(b"\r\n")
    if line_end < 0 or data[9:10] == b"1":
        return data
    head_end = data.find(HEAD_END)
    if head_end < 0:
        return data[: line_end + 2] + _CLOSE_LINE + data[line_end + 2 :]
    head = data[:head_end]
    lower = head.lower()
    if b"\nconnection" in lower:
        head = drop_header(head, lower, b"connection")
    line_end = head.find(b"\r\n")
    if line_end < 0:
        return head + b"\r\n" + _CLOSE_LINE + data[head_end + 2 :]
    return head[: line_end + 2] + _CLOSE_LINE + head[line_end + 2 :] + data[head_end:]
