"""`farmhand up`: the one place that wires the process (DESIGN.md rule 8).

It takes the farm's lock, opens the store, makes the controller (which makes its drivers
and adopts whatever already runs), serves the API around it on a socket bound here, and turns
SIGINT/SIGTERM into a clean stop of the farm and SIGHUP into a reload. The API itself sees
only intents; only this module knows how the parts are put together.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from farmhand.api.app import create_app
from farmhand.api.server import api_server, api_url, bind_api_socket, token_for_output
from farmhand.controller.loop import Controller
from farmhand.errors import FarmhandError, SpecError
from farmhand.spec import load_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir


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
    server = api_server(create_app(ctl, token, api_hosts=(*spec.farm.api_hosts, *api_hosts)))
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
    except SpecError as error:
        ctl.note("farm.reload_refused", f"reload refused, the farm runs on unchanged: {error}")
    except FarmhandError as error:
        ctl.note("farm.reload_refused", str(error))


async def _print_events(ctl: Controller, on_event: Callable[[dict[str, Any]], None]) -> None:
    last = ctl.events(0, 1)
    async for event in ctl.follow_events(last[-1].seq or 0 if last else 0):
        on_event(event.to_json())
