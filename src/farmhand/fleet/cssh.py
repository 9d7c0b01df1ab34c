"""`farmhand cssh`: ClusterSSH in a terminal, as a tmux session with one pane per host.

Each pane runs a real ``ssh`` (a pseudo-terminal on both ends, so full-screen programs work)
set up only from the farm file: its key, its user and port, and its host keys, checked
strictly (``StrictHostKeyChecking=yes``: an unknown or changed key is refused, never
learnt). A pinned ``host_key`` is written to a known_hosts file of the session's own; a
``known_hosts`` file is used as it is. The local host gets a local shell.

What is typed goes to every pane (tmux's ``synchronize-panes``) until broadcast is toggled
off. The session runs on a tmux server of farmhand's own (``tmux -L farmhand``), so its key
bindings never touch the user's own tmux server:

    prefix b        broadcast on / off (the status line says which)
    prefix z        zoom into the current host / back to all (tmux's own zoom)
    prefix o, ←↑↓→  go to another host (or click it)
    prefix d        detach (the panes stay; `farmhand cssh` again re-attaches)

The plan (which tmux commands, which ssh argv) is built by pure functions, tested without
tmux or hosts; ``open_session`` carries it out.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from farmhand.errors import RequestError, StateError
from farmhand.spec.models import HostSpec

DEFAULT_SOCKET = "farmhand"
BROADCAST_KEY = "b"
ZOOM_KEY = "z"
STATUS = "#[reverse]#{?synchronize-panes, BROADCAST: keys go to every host , ONE HOST: keys go to #{@host} }" \
         "#[default] prefix-b broadcast, prefix-z zoom "
"""The status line's right side: whether keys go to all hosts, and the two keys."""


@dataclass(frozen=True)
class Pane:
    """One pane: the host it is for and the shell command tmux runs in it (None: a local
    shell, tmux's default)."""

    host: str
    command: str | None


def session_name(farm_name: str, farm_file: str) -> str:
    """``farmhand-<farm>-<4 hex of the farm file's path>``: one session per farm, and two
    farms of the same name (``farm``, when unnamed) do not share one. tmux refuses ``.`` and
    ``:`` in session names."""
    digest = hashlib.sha256(farm_file.encode()).hexdigest()[:4]
    return f"farmhand-{re.sub(r'[^A-Za-z0-9_-]', '-', farm_name)}-{digest}"


def known_hosts_line(spec: HostSpec) -> str:
    """The known_hosts line of a pinned host key (``[address]:port`` off port 22)."""
    where = spec.address if spec.port == 22 else f"[{spec.address}]:{spec.port}"
    return f"{where} {spec.host_key}"


def ssh_argv(spec: HostSpec, known_hosts: str, connect_timeout: float) -> list[str]:
    """An interactive ssh to the host, configured from the farm file alone (``-F
    /dev/null``): strict host keys against ``known_hosts`` only, the farm's key only."""
    argv = ["ssh", "-F", "/dev/null", "-p", str(spec.port),
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
            "-o", "ServerAliveInterval=30"]
    if spec.key_file:
        argv += ["-i", os.path.expanduser(spec.key_file), "-o", "IdentitiesOnly=yes"]
    if spec.user:
        argv += ["-l", spec.user]
    return [*argv, str(spec.address)]


def panes_for(hosts: Mapping[str, HostSpec], pinned_file: str, connect_timeout: float) -> list[Pane]:
    """One pane per host, in the target's order; fake hosts (no shell) and ssh hosts with no
    host key to check against are refused, naming what to fix."""
    panes = []
    for name, spec in hosts.items():
        if spec.driver == "local":
            panes.append(Pane(name, None))
        elif spec.driver == "ssh":
            if spec.host_key:
                known = pinned_file
            elif spec.known_hosts:
                known = os.path.expanduser(spec.known_hosts)
            else:
                raise RequestError(f"host {name} has no host key to check: set host_key or known_hosts "
                                   "in its [hosts] table", "target")
            panes.append(Pane(name, shlex.join(ssh_argv(spec, known, connect_timeout))))
        else:
            raise RequestError(f"host {name} is a {spec.driver} host: it has no shell to open", "target")
    if not panes:
        raise RequestError("no hosts to open", "target")
    return panes


def tmux_plan(session: str, panes: Sequence[Pane], *, width: int, height: int) -> list[list[str]]:
    """The tmux commands (argv after ``tmux -L SOCKET``) that build the session: the first
    pane with the session, one split per further host, tiled after each split (so splits do
    not run out of room), each pane named by its host, the keys bound, broadcast on."""
    target = f"={session}:"

    def start(pane: Pane) -> list[str]:
        return [pane.command] if pane.command else []

    plan = [["new-session", "-d", "-s", session, "-n", "cssh", "-x", str(width), "-y", str(height),
             *start(panes[0])],
            # first, so a pane whose ssh fails at once (a wrong host key) stays to say why
            ["set-option", "-w", "-t", target, "remain-on-exit", "failed"],
            ["set-option", "-p", "-t", f"{target}.0", "@host", panes[0].host]]
    for pane in panes[1:]:
        plan.append(["split-window", "-t", target, "-P", "-F", "#{pane_id}", *start(pane)])
        plan.append(["set-option", "-p", "-t", target, "@host", pane.host])
        plan.append(["select-layout", "-t", target, "tiled"])
    plan += [
        ["set-option", "-w", "-t", target, "pane-border-status", "top"],
        ["set-option", "-w", "-t", target, "pane-border-format", " #{@host} #{?pane_dead,(closed),} "],
        ["set-option", "-t", session, "mouse", "on"],
        ["set-option", "-t", session, "status-right-length", "120"],
        ["set-option", "-t", session, "status-right", STATUS],
        ["bind-key", BROADCAST_KEY, "set-option", "-w", "synchronize-panes"],
        ["bind-key", ZOOM_KEY, "resize-pane", "-Z"],
        ["set-option", "-w", "-t", target, "synchronize-panes", "on"],
        ["select-pane", "-t", f"{target}.0"],
    ]
    return plan


def attach_argv(socket: str, session: str) -> list[str]:
    return ["tmux", "-L", socket, "attach-session", "-t", f"={session}"]


def pinned_known_hosts(hosts: Mapping[str, HostSpec], session: str) -> str:
    """Write the pinned host keys of ``hosts`` to a known_hosts file of this session (only
    public keys: it stays for the panes' reconnects, in a folder only this user reads)."""
    folder = Path(tempfile.gettempdir()) / f"farmhand-cssh-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{session}.known_hosts"
    lines = [known_hosts_line(spec) for spec in hosts.values() if spec.driver == "ssh" and spec.host_key]
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def _tmux(socket: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["tmux", "-L", socket, *argv], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, env=_env_outside_tmux())
    except FileNotFoundError:
        raise StateError("tmux is not installed: farmhand cssh needs it (apt-get install tmux)") from None


def _env_outside_tmux() -> dict[str, str]:
    """Our own server even when run inside tmux (a nested client, as tmux allows with
    $TMUX unset)."""
    return {k: v for k, v in os.environ.items() if k != "TMUX"}


def session_exists(socket: str, session: str) -> bool:
    return _tmux(socket, ["has-session", "-t", f"={session}"]).returncode == 0


def kill_session(socket: str, session: str) -> None:
    _tmux(socket, ["kill-session", "-t", f"={session}"])


def open_session(socket: str, session: str, panes: Sequence[Pane], *, width: int, height: int) -> None:
    """Carry out the plan as one tmux command sequence; on any failure the half-made session
    is removed and the error names tmux's complaint.

    One sequence, not a tmux call per step: tmux runs a sequence's commands one after the
    other before it looks at exited panes, so no pane can close between its split and the
    option naming its host (with a call per step, a pane whose ssh failed at once was gone,
    and the next ``@host`` landed on another pane)."""
    plan = tmux_plan(session, panes, width=width, height=height)
    sequence = [word for index, argv in enumerate(plan) for word in ([";"] if index else []) + argv]
    answer = _tmux(socket, sequence)
    if answer.returncode:
        kill_session(socket, session)
        hint = " (too many hosts for the window: use a larger terminal or fewer hosts)" \
            if "no space" in answer.stderr else ""
        raise StateError(f"tmux failed to make the session: {answer.stderr.strip()}{hint}")


def attach(socket: str, session: str) -> None:
    """Become the tmux client (never returns)."""
    argv = attach_argv(socket, session)
    os.execvpe(argv[0], argv, _env_outside_tmux())
