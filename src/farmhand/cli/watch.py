"""Verbs that look at a farm: `status`, `events`, `logs`, `hosts`.

`events` and `logs` also work when the farm is down, from .farmhand/ (cli/offline.py);
followed streams end cleanly with a last line saying the farm stopped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from farmhand.cli.common import client_for, console, farm_option, state_for
from farmhand.errors import ApiError

if TYPE_CHECKING:
    from farmhand.cli.client import ApiClient
    from farmhand.store.statedir import StateDir

STOP_WAIT = 10.0
"""Seconds a cut stream waits for the controller to be gone before calling it an error."""


@click.command()
@farm_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object (a stable contract, see README).")
@click.option("--all", "all_nodes", is_flag=True,
              help="List every node (past 1,000 nodes only those needing attention are listed, all counted).")
@click.pass_context
def status(ctx: click.Context, as_json: bool, all_nodes: bool) -> None:
    """Roles, nodes and hosts of the running farm."""
    data = client_for(ctx).get("/api/status", **({"nodes": "all"} if all_nodes else {}))
    _show(data, as_json, "status_tables")


def _show(data: Any, as_json: bool, table: str) -> None:
    """JSON for scripts, else the named table of cli/render.py (imported only then)."""
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2))
    else:
        from farmhand.cli import render

        getattr(render, table)(console(), data)


@click.command()
@farm_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the farm stops.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--last", "-n", default=50, show_default=True, type=click.IntRange(min=0),
              help="How many past events to show.")
@click.pass_context
def events(ctx: click.Context, follow: bool, as_json: bool, last: int) -> None:
    """What happened in the farm, with times and reasons (read from .farmhand/ when it is down)."""
    import json

    from farmhand.cli.render import event_line

    def show(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event) if as_json else event_line(event))

    state = state_for(ctx)
    if state.controller_pid() is None:
        from farmhand.cli.offline import read_events

        for event in read_events(state, last) if last else []:
            show(event)
        _note(f"farm {state.farm_name()} is down: these are its stored events", as_json or not follow)
        return
    client = client_for(ctx, state)
    past = client.get("/api/events", limit=max(last, 1))
    for event in past[-last:] if last else []:
        show(event)
    if not follow:
        return
    after = past[-1]["seq"] if past else 0
    for event in _follow_events(client, after):
        show(event)
    _stopped(state, client, as_json)


def _follow_events(client: ApiClient, after: int) -> Iterator[dict[str, Any]]:
    """Events from the server-sent stream until it ends (a farm that stops ends it)."""
    import json

    from farmhand.cli.client import StreamEnded

    buffer = b""
    try:
        for chunk in client.stream("/api/events/stream", after=after):
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.decode(errors="replace").splitlines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
    except StreamEnded:
        pass


def _stopped(state: StateDir, client: ApiClient, to_stderr: bool) -> None:
    """A followed stream ended: fine when the farm stopped (say so last), an error otherwise."""
    deadline = time.monotonic() + STOP_WAIT
    while state.controller_pid() == client.pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if state.controller_pid() == client.pid:
        raise ApiError(f"the stream from the controller (pid {client.pid}) ended while it still runs; "
                       "run the command again")
    _note(f"farm {state.farm_name()} stopped", to_stderr)


def _note(text: str, to_stderr: bool) -> None:
    click.echo(text, err=to_stderr)


@click.command()
@click.argument("node")
@farm_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing what the node writes, until the farm stops.")
@click.pass_context
def logs(ctx: click.Context, node: str, follow: bool) -> None:
    """A node's output (stdout and stderr); read from .farmhand/ when the farm is down."""
    state = state_for(ctx)
    out = sys.stdout.buffer
    if state.controller_pid() is None:
        from farmhand.cli.offline import read_log

        out.write(read_log(state, node))
        out.flush()
        return
    from urllib.parse import quote

    from farmhand.cli.client import StreamEnded

    client = client_for(ctx, state)
    try:
        for chunk in client.stream(f"/api/nodes/{quote(node, safe='')}/log", follow=follow):
            out.write(chunk)
            out.flush()
    except StreamEnded:
        if not follow:
            raise
    if follow:
        _stopped(state, client, True)


@click.command()
@farm_option
@click.option("--json", "as_json", is_flag=True, help="The rows as one JSON list, for scripts.")
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """Hosts with their state, load, capacity used and nodes."""
    _show(client_for(ctx).get("/api/hosts"), as_json, "hosts_table")
