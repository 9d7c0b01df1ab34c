"""The API's front door: a pure ASGI layer that refuses a request before any route reads it.

Why in front of FastAPI and not a route dependency: FastAPI reads (and parses) a route's
body before it runs the route's dependencies, so a token check written as a dependency came
after a body of any size was in memory (issue 10.6: a 300 MB POST without a token grew the
controller by 300 MB). Here every request is judged on its head alone, in this order:

1. ``Host`` must name the API itself: the address the connection came in on, a loopback
   name (``localhost``, ``127.0.0.1``, ``[::1]``) at the API's port, or a name the user
   configured. A DNS-rebinding page reaches the API under its own name (``evil.example``)
   and is refused, so it cannot read status or logs even though reads need no token.
2. Every method but GET and HEAD changes the farm and needs ``Authorization: Bearer
   <token>`` (scheme case-insensitive, RFC 7235): none or an empty one is 401 with
   ``WWW-Authenticate: Bearer``, a wrong one 403.
3. A body announced larger than ``max_body`` is 413 at once; a body without a length
   (chunked) is counted as the route reads it and refused at the same limit.

A refusal is the API's usual JSON (``{"error": ..., "field": ...}``); when the request
carries a body that was never read, the answer closes the connection, so the rest of the
body is never waited for.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_BODY = 64 * 1024
"""The largest request body the API takes: its bodies are a count or a host name."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_HINT = "Authorization: Bearer <token from .farmhand/token>"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, as the API answers it."""

    status: int
    message: str
    field: str
    headers: tuple[tuple[str, str], ...] = ()


class BodyTooLarge(HTTPException):
    """Raised into a route that reads past ``max_body``; FastAPI lets HTTPExceptions through
    its body parsing, and ``create_app`` renders this one like every other refusal."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large(limit).message)
        self.limit = limit


def body_too_large(limit: int) -> Refusal:
    return Refusal(413, f"request body too large: the API takes at most {limit} bytes", "body")


def check_bearer(header: str | None, token: str) -> Refusal | None:
    """``None`` when ``header`` carries ``token`` in the Bearer scheme, else the refusal."""
    challenge = (("www-authenticate", 'Bearer realm="farmhand"'),)
    scheme, _, given = (header or "").strip().partition(" ")
    given = given.strip()
    if not scheme:
        return Refusal(401, f"this call changes the farm and needs the token ({TOKEN_HINT})",
                       "authorization", challenge)
    if scheme.lower() != "bearer":
        return Refusal(401, f"the token goes in the Bearer scheme ({TOKEN_HINT}), not {scheme[:20]!r}",
                       "authorization", challenge)
    if not given:
        return Refusal(401, f"the Bearer token is empty ({TOKEN_HINT})", "authorization", challenge)
    # bytes, so a token with characters outside ASCII is simply wrong (str needs ASCII)
    if not secrets.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
        return Refusal(403, "wrong token (see .farmhand/token)", "authorization")
    return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` as (lower-case name, port or None); ``None`` when it is not a host at all.
    IPv6 literals come without their brackets: ``[::1]:80`` -> ``("::1", 80)``."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_ = value.partition(":")
        port_text = port_text_ if colon else None
        if ":" in port_text_:
            return None
    if not name:
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def host_allowed(header: str | None, server: tuple[str, int] | None, names: Iterable[str] = ()) -> bool:
    """Whether ``Host: header`` names this API. ``server`` is the (address, port) the
    connection came in on; ``names`` are extra names the user configured: ``name`` at the
    API's port (or with no port, as behind a proxy on 80) or ``name:port`` exactly."""
    parsed = split_host(header or "")
    if parsed is None:
        return False
    name, port = parsed
    for extra in names:
        wanted = split_host(extra)
        if wanted is None:
            continue
        if wanted[1] is None and name == wanted[0] and (port is None or server is None or port == server[1]):
            return True
        if wanted == (name, port):
            return True
    if server is None:
        return False
    address, server_port = server[0].lower(), server[1]
    given_port = port if port is not None else 80
    return given_port == server_port and (name == address or name in LOOPBACK_NAMES)


def announced_length(headers: dict[bytes, list[bytes]]) -> int | None | Refusal:
    """The body length the head announces (``None``: no length, chunked or no body)."""
    values = headers.get(b"content-length", [])
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].strip().isdigit():
        return Refusal(400, "Content-Length is not one whole number", "content-length")
    return int(values[0].strip())


class Guard:
    """ASGI middleware applying the rules in the module docstring (see there for why)."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: Iterable[str] = (), max_body: int = MAX_BODY) -> None:
        self.app = app
        self.token = token
        self.hosts = tuple(hosts)
        self.max_body = max_body

    def __repr__(self) -> str:
        return f"<Guard [extra hosts: {len(self.hosts)} | max body: {self.max_body}]>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), []).append(value)
        has_body = bool(headers.get(b"transfer-encoding")) or headers.get(b"content-length", [b"0"]) != [b"0"]
        refusal = self.judge(scope, headers)
        if refusal is not None:
            await refuse(send, refusal, close=has_body)
            return
        await self.app(scope, self._counting(receive), send)

    def judge(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> Refusal | None:
        hosts = headers.get(b"host", [])
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        server = scope.get("server")
        if not host_allowed(host, (str(server[0]), int(server[1])) if server and server[1] else None, self.hosts):
            shown = "none" if host is None else repr(host[:80])
            return Refusal(400, f"Host not allowed: {shown}; the API answers to the address it listens on "
                                "and to localhost (DNS-rebinding guard)", "host")
        if scope["method"] not in SAFE_METHODS:
            authorization = headers.get(b"authorization", [])
            refusal = check_bearer(authorization[0].decode("latin-1") if len(authorization) == 1 else None,
                                   self.token)
            if refusal is not None:
                return refusal
        length = announced_length(headers)
        if isinstance(length, Refusal):
            return length
        if length is not None and length > self.max_body:
            return body_too_large(self.max_body)
        return None

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that raises ``BodyTooLarge`` once more than ``max_body`` bytes came."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return counted


async def refuse(send: Send, refusal: Refusal, close: bool) -> None:
    body = json.dumps({"error": refusal.message, "field": refusal.field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode(), value.encode()) for name, value in refusal.headers]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
