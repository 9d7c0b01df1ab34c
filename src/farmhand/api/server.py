"""`farmhand up`: the one process that hosts a farm's controller and its API.

It takes the farm's lock, adopts whatever already runs, serves the API on a socket it binds
itself (so port 0 can pick a free port that is then written to .farmhand/api.json), and
turns SIGINT/SIGTERM into a clean stop of the farm and SIGHUP into a reload.

The token never reaches a log: uvicorn writes no access log, the guard (``api/guard.py``)
never echoes a header, and ``on_ready`` gets the real token only when this process's output
is a terminal a person reads; when it goes to a file (``up --detach`` writes it to
``controller.log``, 0644) the callback gets ``TOKEN_ELSEWHERE`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any

import uvicorn

from farmhand.api.app import create_app
from farmhand.api.head_deadline import HEAD_TIMEOUT, head_deadline_protocol
from farmhand.controller.loop import Controller
from farmhand.errors import FarmhandError, StateError
from farmhand.spec import load_farm
from farmhand.spec.models import split_host_port
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir

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


async def serve_farm(farm_file: Path, on_ready: Callable[[str, str], None] | None = None,
                     on_event: Callable[[dict[str, Any]], None] | None = None,
                     api_hosts: Iterable[str] = ()) -> None:
    """Run the farm until it is shut down; ``on_ready(url, token)`` once the API answers
    (the token only when the output is a terminal, see the module docstring); ``on_event``
    sees every event as it happens (the foreground `up` prints them). ``api_hosts``: names
    besides the API's address and localhost that clients may use (``Host``)."""
    spec = load_farm(farm_file)
    state = StateDir.beside(farm_file)
    state.create()
    lock = state.lock()
    store = SqliteStore(state.database)
    sock = bind_api_socket(spec.farm.api)
    ctl = Controller(spec, farm_file.resolve(), state, store)
    token = state.token()
    server = api_server(create_app(ctl, token, api_hosts=api_hosts))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, ctl.request_shutdown, "interrupted (SIGINT)")
    loop.add_signal_handler(signal.SIGTERM, ctl.request_shutdown, "terminated (SIGTERM)")
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(ctl)))
    printer = asyncio.create_task(_print_events(ctl, on_event)) if on_event else None
    try:
        await ctl.start()
        api_task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not api_task.done():
            await asyncio.sleep(0.01)
        url = api_url(sock)
        state.write_api(url, os.getpid(), farm_file.resolve())
        if on_ready:
            on_ready(url, token_for_output(token))
        await ctl.run()
        server.should_exit = True
        await api_task
    finally:
        if printer:
            printer.cancel()
        state.remove_api()
        store.close()
        sock.close()
        lock.close()


async def _reload(ctl: Controller) -> None:
    try:
        await ctl.reload()
    except FarmhandError as error:
        ctl.ctx.events.add("farm.reload_refused", f"reload refused, the farm runs on unchanged: {error}")


async def _print_events(ctl: Controller, on_event: Callable[[dict[str, Any]], None]) -> None:
    last = ctl.ctx.store.events(0, 1)
    async for event in ctl.ctx.events.follow(last[-1].seq or 0 if last else 0):
        on_event(event.to_json())
