"""Verbs that start and stop a farm: `check`, `up`, `down`, `dashboard`.

`up` hosts the controller in this process; `up --detach` starts that process in the
background with its output in .farmhand/controller.log and waits until every role is ready.
The dashboard link carries the API token, so it is printed only to a terminal and never by
the detached controller, whose output is a log file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from farmhand.cli.common import (
    client_for,
    display,
    farm_file_for,
    farm_option,
    folder_name,
    how_to_reach,
    say,
    state_for,
)
from farmhand.errors import FarmhandError, SpecError, StateError

if TYPE_CHECKING:
    from farmhand.spec.models import FarmSpec
    from farmhand.store.statedir import StateDir

FARM_FILE = click.Path(dir_okay=False, path_type=Path)
STARTUP_ERROR_PREFIX = "error: "
"""How the CLI prints a FarmhandError; a detached controller's startup failure is found by it."""
DASHBOARD_HINT = "dashboard: `farmhand dashboard` prints its link (kept out of logs: it carries the token)"


def load_or_report(farm_file: Path, after: str) -> FarmSpec:
    """The farm's spec; a broken file prints every problem and ``after`` says what follows."""
    from farmhand.spec import load_farm

    try:
        return load_farm(farm_file)
    except SpecError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(error.problems)} problem(s){after}", err=True)
        raise SystemExit(error.exit_code) from None


@click.command(short_help="Validate a farm file; changes nothing.")
@click.argument("farm_file", type=FARM_FILE, required=False)
@farm_option
@click.pass_context
def check(ctx: click.Context, farm_file: Path | None) -> None:
    """Validate a farm file (FARM_FILE, else --farm, else ./farm.toml); every problem is
    listed with file, line and key (exit 2). Changes nothing."""
    farm_file = farm_file_for(ctx, farm_file, "check")
    spec = load_or_report(farm_file, "")
    nodes = sum(role.initial_count for role in spec.roles.values())
    say(f"{farm_file}: ok: farm {spec.name}, {len(spec.roles)} role(s), {nodes} node(s), {len(spec.hosts)} host(s)")


@click.command(short_help="Start the farm (foreground, or --detach).")
@click.argument("farm_file", type=FARM_FILE, required=False)
@farm_option
@click.option("--detach", "-d", is_flag=True, help="Run in the background; return once every role is ready.")
@click.option("--timeout", default=120.0, show_default=True, help="With --detach: seconds to wait for readiness.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print events while running in the foreground.")
@click.option("--child", is_flag=True, hidden=True, help="The detached controller: its output is a log file.")
@click.pass_context
def up(ctx: click.Context, farm_file: Path | None, detach: bool, timeout: float, quiet: bool, child: bool) -> None:
    """Start the farm's controller (FARM_FILE, else --farm, else ./farm.toml): in the
    foreground (Ctrl-C stops the farm cleanly), or with --detach in the background.

    One farm per folder: a second `up` of the same file says the farm is already up; another
    farm file in the same folder is refused while that farm runs."""
    farm_file = farm_file_for(ctx, farm_file, "up")
    spec = load_or_report(farm_file, "; nothing was started")  # refused before anything starts
    from farmhand.store.statedir import StateDir

    state = StateDir.beside(farm_file)
    if _already_up(state, farm_file, spec.name):
        return
    state.create()
    state.remember_farm(farm_file, spec.name)
    if detach:
        _up_detached(state, farm_file, spec.name, timeout)
        return
    from farmhand.cli.render import event_line
    from farmhand.serve import serve_farm

    def ready(url: str, token: str) -> None:
        if child:  # this output is controller.log: no token, no advice meant for a terminal
            click.echo(f"controller pid {os.getpid()}: farm {spec.name} up, API on {url}")
            return
        click.echo(f"farm {spec.name} is up: API on {url} (docs {url}/docs)")
        click.echo(f"dashboard: {url}/#token={token}" if sys.stdout.isatty() else DASHBOARD_HINT)
        click.echo(f"Ctrl-C (or SIGTERM) stops the farm; in another terminal, {how_to_reach(farm_file)}")

    run_async(serve_farm(farm_file, ready, None if quiet else lambda e: click.echo(event_line(e))))


def run_async(coroutine: Any) -> None:
    """Run on uvloop where it is installed. Only uvloop's own absence falls back to asyncio:
    an ImportError raised by the coroutine is the farm's error and keeps its message."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def _already_up(state: StateDir, farm_file: Path, name: str) -> bool:
    """True (after saying so) when this farm already runs; another farm in the folder is an error."""
    if not state.path.is_dir():
        return False
    pid = state.controller_pid()
    if pid is None:
        return False
    info: dict[str, Any] = {}
    try:
        info = state.read_api()
    except StateError:
        pass
    running_file = info.get("farm_file") or state.remembered_farm().get("farm_file") or ""
    if running_file and Path(running_file) != farm_file.resolve():
        running_name = state.farm_name()
        raise StateError(
            f"one farm per folder: {folder_name(state.path.parent)} already runs farm {running_name} "
            f"from {display(Path(running_file))} (pid {pid}), and its .farmhand/ belongs to that farm; "
            f"stop it first (`farmhand --farm {display(Path(running_file))} down`) "
            f"or put {farm_file.name} in a folder of its own")
    where = f"API {info['url']}" if info.get("url") else "still starting"
    say(f"farm {name} is already up (pid {pid or '?'}, {where})")
    return True


def _up_detached(state: StateDir, farm_file: Path, name: str, timeout: float) -> None:
    import subprocess

    from farmhand.cli.client import ApiClient
    from farmhand.store.statedir import open_private

    state.remove_api()  # a controller killed with -9 leaves its address behind
    log = open_private(state.controller_log)
    log_start = os.fstat(log).st_size
    try:
        # the absolute path: `ps` then says which farm a controller runs
        child = subprocess.Popen([sys.executable, "-m", "farmhand", "up", "--quiet", "--child",
                                  str(farm_file.resolve())],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    finally:
        os.close(log)
    deadline = time.monotonic() + timeout
    client: ApiClient | None = None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise StateError(_startup_failure(state, log_start, child.returncode))
        try:
            client = client or ApiClient(state)
            if client.pid != child.pid:
                client = None
                raise StateError("not yet")
            status = client.get("/api/status")
        except FarmhandError:
            time.sleep(0.1)
            continue
        broken = [f"role {r['name']}: load balancer on {r.get('lb')} is broken: {r.get('lb_error') or 'no reason given'}"
                  for r in status["roles"] if r.get("lb_state") == "broken"]
        if broken:
            raise StateError("; ".join(broken) + f"; the controller (pid {child.pid}) runs on: "
                             "fix the farm file and `farmhand reload`, or `farmhand down`")
        if all(role["healthy"] >= role["wanted"] for role in status["roles"]):
            say(f"farm {name} is up (controller pid {child.pid}, API {client.url}, "
                f"log {display(state.controller_log)})")
            say(f"dashboard: {client.dashboard_link()}" if sys.stdout.isatty() else DASHBOARD_HINT)
            say(f"next: {how_to_reach(farm_file)}")
            return
        time.sleep(0.2)
    short = [f"{r['name']} {r['healthy']}/{r['wanted']} healthy" for r in status.get("roles", [])]
    events = client.get("/api/events", limit=8) if client else []
    raise StateError(f"not ready after {timeout:.0f}s: {', '.join(short) or 'no answer from the controller'}; "
                     "the farm keeps running (see `farmhand status`, `farmhand down`). Last events:\n  "
                     + "\n  ".join(e["message"] for e in events))


def _startup_failure(state: StateDir, log_start: int, code: int) -> str:
    """Why a detached controller exited before it was ready: its `error:` lines, else the
    end of what it wrote this time (never older runs' lines, never a token)."""
    with open(state.controller_log, "rb") as log:
        log.seek(log_start)
        lines = log.read().decode(errors="replace").strip().splitlines()
    reasons = [line[len(STARTUP_ERROR_PREFIX):] for line in lines if line.startswith(STARTUP_ERROR_PREFIX)]
    if reasons:
        return "the farm did not start: " + "\n  ".join(reasons)
    tail = [line for line in lines if "token=" not in line][-5:]
    return (f"the controller exited (status {code}) before the farm was ready; "
            f"{display(state.controller_log)} ends:\n  " + "\n  ".join(tail or ["(nothing)"]))


@click.command()
@farm_option
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for every node to stop.")
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for every node and the controller to stop (then exit 1; the farm goes on stopping).")
@click.pass_context
def down(ctx: click.Context, no_wait: bool, timeout: float) -> None:
    """Stop every node and the controller. A farm that is already down says so (exit 0)."""
    state = state_for(ctx)
    if state.controller_pid() is None:
        _already_down(state)
        return
    client = client_for(ctx, state)
    say(client.post("/api/down").get("message") or "stopping")
    if no_wait:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.controller_pid() is None:
            say(f"farm {state.farm_name()} is down")
            return
        time.sleep(0.1)
    raise StateError(f"the controller (pid {client.pid}) still runs after {timeout:.0f}s; see `farmhand status`")


def _already_down(state: StateDir) -> None:
    """No controller: down already, unless a controller died leaving nodes it asked for."""
    from farmhand.cli.offline import stored_nodes

    left = stored_nodes(state)
    if not left:
        say(f"farm {state.farm_name()} is already down")
        return
    from farmhand.cli.common import start_command

    raise StateError(f"farm {state.farm_name()} has no controller, but its last one ended without stopping "
                     f"{len(left)} node(s) ({', '.join(left[:10])}); `{start_command(state)}` adopts them, "
                     "then `farmhand down` stops them")


@click.command()
@farm_option
@click.option("--open", "open_browser", is_flag=True, help="Also open it in a web browser.")
@click.pass_context
def dashboard(ctx: click.Context, open_browser: bool) -> None:
    """Print the dashboard's link (the token rides in its #fragment, which no server logs)."""
    link = client_for(ctx).dashboard_link()
    click.echo(link)
    if open_browser:
        import webbrowser

        if not webbrowser.open(link):
            raise StateError("no web browser could be opened here; open the link above yourself")
