"""How the API is served: its socket (bound here, so port 0 can pick a free port that is then
written to .farmhand/api.json), uvicorn's settings, and where the token may be shown.
``farmhand.serve`` wires these around a controller.

The token never reaches a log: uvicorn writes no access log, the guard (``api/guard.py``)
never echoes a header, and ``on_ready`` gets the real token only when this process's output
is a terminal a person reads; when it goes to a file (``up --detach`` writes it to
``controller.log``, 0644) the callback gets ``TOKEN_ELSEWHERE`` instead.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Generator
from typing import Any

import uvicorn

from farmhand.api.head_deadline import HEAD_TIMEOUT, head_deadline_protocol
from farmhand.errors import StateError
from farmhand.spec.models import split_host_port

log = logging.getLogger(__name__)
TOKEN_ELSEWHERE = "see-.farmhand-token"
"""What ``on_ready`` gets for the token when the output is a file, not a terminal."""
KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection is kept (uvicorn's own default, made explicit)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the controller owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_api_socket(address: str) -> socket.socket:
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise StateError(f"the API cannot listen on {address}: {error.strerror} (farm.api in the farm file)") from error
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def api_server(app: Any, head_timeout: float = HEAD_TIMEOUT) -> uvicorn.Server:
    """uvicorn for the API: no access log, no signal handling of its own, a deadline for a
    whole request head and a keep-alive limit, so no client holds a connection for free."""
    return _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                  timeout_graceful_shutdown=1, timeout_keep_alive=KEEP_ALIVE,
                                  http=head_deadline_protocol(head_timeout)))


def token_for_output(token: str, stream: Any = None) -> str:
    """The token where a person reads the output, ``TOKEN_ELSEWHERE`` where it is a log."""
    stream = sys.stdout if stream is None else stream
    try:
        return token if stream.isatty() else TOKEN_ELSEWHERE
    except (AttributeError, ValueError):
        return TOKEN_ELSEWHERE


def api_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
