"""The `farmhand` command. `check` and `up` work on the farm file; every other verb is a
client of the running controller's API, found through .farmhand/ in this folder or above."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from farmhand.cli.client import ApiClient
from farmhand.cli.load import load as load_command
from farmhand.cli.render import event_line, hosts_table, status_tables
from farmhand.errors import FarmhandError, SpecError, StateError
from farmhand.store.statedir import StateDir

# Piped output (scripts, tests, `| less`) gets whole tables rather than 80 columns of
# truncated names; a terminal gets its own width.
console = Console() if sys.stdout.isatty() else Console(width=200)
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_FARM = "farm.toml"


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except SpecError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(error.problems)} problem(s); nothing was changed", err=True)
        sys.exit(error.exit_code)
    except FarmhandError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--farm", "farm_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The farm file; its .farmhand/ folder is used. Default: .farmhand/ here or above.")
@click.pass_context
def cli(ctx: click.Context, farm_file: Path | None) -> None:
    """farmhand: declare a farm in one TOML file; farmhand runs, heals and balances it."""
    ctx.obj = farm_file


def _state(ctx: click.Context) -> StateDir:
    farm_file: Path | None = ctx.obj
    return StateDir.beside(farm_file) if farm_file else StateDir.find()


def _client(ctx: click.Context) -> ApiClient:
    return ApiClient(_state(ctx))


@cli.command()
@click.argument("farm_file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_FARM)
def check(farm_file: Path) -> None:
    """Validate a farm file; every problem is listed with file, line and key (exit 2)."""
    from farmhand.spec import load_farm

    spec = load_farm(farm_file)
    nodes = sum(role.initial_count for role in spec.roles.values())
    console.print(f"{farm_file}: ok: farm {spec.name}, {len(spec.roles)} role(s), {nodes} node(s), "
                  f"{len(spec.hosts)} host(s)", highlight=False)


@cli.command()
@click.argument("farm_file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_FARM)
@click.option("--detach", "-d", is_flag=True, help="Run in the background; return once every role is ready.")
@click.option("--timeout", default=120.0, show_default=True, help="With --detach: seconds to wait for readiness.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print events while running in the foreground.")
def up(farm_file: Path, detach: bool, timeout: float, quiet: bool) -> None:
    """Start the farm's controller (foreground; Ctrl-C stops the farm cleanly)."""
    from farmhand.spec import load_farm

    load_farm(farm_file)  # a broken file is refused before anything starts
    if detach:
        _up_detached(farm_file, timeout)
        return
    from farmhand.api.server import serve_farm

    def ready(url: str, token: str) -> None:
        click.echo(f"farm up: API on {url} (docs {url}/docs)\ndashboard: {url}/#token={token}\n"
                   "Ctrl-C (or SIGTERM) stops the farm; `farmhand status` in this folder shows it.")

    _run_async(serve_farm(farm_file, ready, None if quiet else lambda e: click.echo(event_line(e))))


def _run_async(coroutine: Any) -> None:
    try:
        import uvloop

        uvloop.run(coroutine)
    except ImportError:
        import asyncio

        asyncio.run(coroutine)


def _up_detached(farm_file: Path, timeout: float) -> None:
    state = StateDir.beside(farm_file)
    state.create()
    state.remove_api() if not _controller_alive(state) else None
    with open(state.controller_log, "ab") as log:
        # the absolute path: `ps` then says which farm a controller runs
        child = subprocess.Popen([sys.executable, "-m", "farmhand", "up", "--quiet", str(farm_file.resolve())],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    client: ApiClient | None = None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = state.controller_log.read_text(errors="replace").strip().splitlines()[-5:]
            raise StateError("the controller exited at once:\n  " + "\n  ".join(tail))
        try:
            client = client or ApiClient(state)
            if client.pid != child.pid:
                client = None
                raise StateError("not yet")
            status = client.get("/api/status")
        except FarmhandError:
            time.sleep(0.1)
            continue
        if all(role["healthy"] >= role["wanted"] for role in status["roles"]):
            console.print(f"farm {status['farm']} is up (controller pid {child.pid}, API {client.url}, "
                          f"log {state.controller_log})", highlight=False)
            return
        time.sleep(0.2)
    short = [f"{r['name']} {r['healthy']}/{r['wanted']} healthy" for r in status.get("roles", [])]
    events = client.get("/api/events", limit=8) if client else []
    raise StateError(f"not ready after {timeout:.0f}s: {', '.join(short) or 'no answer from the controller'}; "
                     "the farm keeps running (see `farmhand status`, `farmhand down`). Last events:\n  "
                     + "\n  ".join(e["message"] for e in events))


def _controller_alive(state: StateDir) -> bool:
    try:
        pid = int(state.read_api().get("pid", 0))
        os.kill(pid, 0)
        return True
    except (FarmhandError, OSError, ValueError):
        return False


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (a stable contract, see README).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Roles, nodes and hosts of the running farm."""
    data = _client(ctx).get("/api/status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        status_tables(console, data)


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--last", "-n", default=50, show_default=True, help="How many past events to show.")
@click.pass_context
def events(ctx: click.Context, follow: bool, as_json: bool, last: int) -> None:
    """What happened in the farm, with times and reasons."""
    client = _client(ctx)
    past = client.get("/api/events", limit=max(last, 1))
    for event in past[len(past) - last:] if last else []:
        click.echo(json.dumps(event) if as_json else event_line(event))
    if not follow:
        return
    after = past[-1]["seq"] if past else 0
    buffer = b""
    for chunk in client.stream("/api/events/stream", after=after):
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            for line in block.decode().splitlines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    click.echo(json.dumps(event) if as_json else event_line(event))


@cli.command()
@click.argument("node")
@click.option("--follow", "-f", is_flag=True, help="Keep printing what the node writes.")
@click.pass_context
def logs(ctx: click.Context, node: str, follow: bool) -> None:
    """A node's output (stdout and stderr)."""
    client = _client(ctx)
    for chunk in client.stream(f"/api/nodes/{node}/log", follow=str(follow).lower()):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


def _say(answer: dict[str, Any], default: str) -> None:
    console.print(answer.get("message") or default, highlight=False)


@cli.command()
@click.argument("role")
@click.argument("count", type=click.IntRange(min=0))
@click.pass_context
def scale(ctx: click.Context, role: str, count: int) -> None:
    """Set how many nodes ROLE runs."""
    answer = _client(ctx).post(f"/api/roles/{role}/scale", {"count": count})
    _say(answer, f"role {role}: {answer['before']} -> {answer['after']} nodes")


@cli.command()
@click.argument("node")
@click.pass_context
def stop(ctx: click.Context, node: str) -> None:
    """Drain and stop NODE for good (its role wants one node fewer)."""
    _say(_client(ctx).post(f"/api/nodes/{node}/stop"), f"{node} stopping")


@cli.command()
@click.argument("node")
@click.pass_context
def replace(ctx: click.Context, node: str) -> None:
    """Start a new node for NODE's role, then drain and stop NODE."""
    _say(_client(ctx).post(f"/api/nodes/{node}/replace"), f"{node} will be replaced")


@cli.command()
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Apply the edited farm file; a broken one is refused and nothing changes."""
    answer = _client(ctx).post("/api/reload")
    changes = answer.get("changes") or []
    console.print("reloaded: " + ("; ".join(changes) if changes else "no changes"), highlight=False)


@cli.command()
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for every node to stop.")
@click.option("--timeout", default=120.0, show_default=True)
@click.pass_context
def down(ctx: click.Context, no_wait: bool, timeout: float) -> None:
    """Stop every node and the controller."""
    client = _client(ctx)
    _say(client.post("/api/down"), "stopping")
    if no_wait:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(client.pid, 0)
        except ProcessLookupError:
            console.print("farm is down", highlight=False)
            return
        time.sleep(0.1)
    raise StateError(f"the controller (pid {client.pid}) still runs after {timeout:.0f}s; see `farmhand status`")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """Hosts with their state, load, capacity used and nodes."""
    rows = _client(ctx).get("/api/hosts")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        hosts_table(console, rows)


@cli.command()
@click.argument("node")
@click.option("--to", "host", required=True, help="The host the node moves to.")
@click.pass_context
def migrate(ctx: click.Context, node: str, host: str) -> None:
    """Move NODE to another host without dropping a request."""
    _say(_client(ctx).post(f"/api/nodes/{node}/migrate", {"host": host}), f"{node} moving to {host}")


@cli.command("drain-host")
@click.argument("host")
@click.pass_context
def drain_host(ctx: click.Context, host: str) -> None:
    """Move every node off HOST (maintenance) and place no new ones there."""
    _say(_client(ctx).post(f"/api/hosts/{host}/drain"), f"host {host} drained")


@cli.command("undrain-host")
@click.argument("host")
@click.pass_context
def undrain_host(ctx: click.Context, host: str) -> None:
    """Let placement use HOST again."""
    _say(_client(ctx).post(f"/api/hosts/{host}/undrain"), f"host {host} undrained")


cli.add_command(load_command)
