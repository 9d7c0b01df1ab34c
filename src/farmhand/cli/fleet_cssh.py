"""`farmhand cssh TARGET`: one tmux pane per host, a real ssh in each, keys to all at once
(ClusterSSH in a terminal; ``farmhand.fleet.cssh`` builds the plan)."""

from __future__ import annotations

import shutil
import sys

import click

from farmhand.cli.common import farm_option
from farmhand.cli.fleet import _farm_file, _farm_spec


@click.command()
@click.argument("target")
@click.option("--no-attach", is_flag=True, help="Make the session and print how to attach (for scripts).")
@click.option("--replace", is_flag=True, help="Close this farm's open cssh session first and open a new one.")
@click.option("-L", "--socket", default="farmhand", show_default=True,
              help="The tmux server (tmux -L NAME) the session runs on: one of farmhand's own, so its "
                   "keys never change your other tmux sessions.")
@click.option("-t", "--connect-timeout", default="10s", show_default=True)
@farm_option
@click.pass_context
def cssh(ctx: click.Context, target: str, no_attach: bool, replace: bool, socket: str,
         connect_timeout: str) -> None:
    """One terminal pane per host of TARGET, each a real ssh session; what you type goes to
    every host at once (ClusterSSH in tmux).

    \b
    Keys (prefix is tmux's, Ctrl-b unless your ~/.tmux.conf changes it):
      prefix b        broadcast on/off: off, keys go to the current pane only
      prefix z        zoom into the current host, again to see all
      prefix o, arrows, or a click: go to another host
      prefix d        detach (the panes stay; run `farmhand cssh` again to come back)
      exit in every pane (or prefix &) closes it
    The status line says whether keys go to all hosts. Host keys are checked strictly
    against the farm file's host_key or known_hosts; the local host gets a local shell.
    One session per farm (farmhand-NAME-XXXX): a second `farmhand cssh` re-attaches to it."""
    from farmhand.fleet import cssh as tmux
    from farmhand.fleet import targets
    from farmhand.units import parse_duration

    if not no_attach and not sys.stdin.isatty():
        raise click.UsageError("farmhand cssh attaches to a terminal and this is none: --no-attach makes "
                               "the session and prints how to attach")
    spec = _farm_spec(ctx)
    session = tmux.session_name(spec.name, str(_farm_file(ctx).resolve()))
    hosts = targets.hosts_of(target, targets.inventory_of(spec))
    try:
        timeout = parse_duration(connect_timeout)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    chosen = {name: spec.hosts[name] for name in hosts}
    exists = tmux.session_exists(socket, session)
    if exists and replace:
        tmux.kill_session(socket, session)
    if exists and not replace:
        click.echo(f"{session} is already open: attaching (--replace opens a new one for {target})", err=True)
    else:
        panes = tmux.panes_for(chosen, tmux.pinned_known_hosts(chosen, session), timeout)
        size = shutil.get_terminal_size((160, 48))
        tmux.open_session(socket, session, panes, width=max(size.columns, 80), height=max(size.lines, 24))
    if no_attach:
        click.echo(f"{session}: {len(hosts)} hosts; attach with: tmux -L {socket} attach -t {session}")
        return
    tmux.attach(socket, session)
