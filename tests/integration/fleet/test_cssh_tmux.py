"""`farmhand cssh` driven as a person would: the real command attached in a pseudo-terminal,
keys typed into it (the tmux prefix included), each pane read with capture-pane.

One pane per host (three test hosts over ssh, the local host as a local shell); a line typed
reaches every pane and each shows its own host; after broadcast is toggled off a line goes to
one pane only; zoom shows one host. A host whose key does not match its pin is refused. Every
test runs its own tmux server (``-L``), killed at the end even on failure."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import FARMHAND, Farm, wait_for

pytestmark = pytest.mark.slow

IDENTIFY = 'echo "at=$(echo ${SSH_CONNECTION:-- - here -} | cut -d" " -f3) tty=$(tty)="'
"""Prints ``at=<the host's address, or here>`` and the pane's terminal (a real pty)."""
SHOWN = re.compile(r"^at=(\S+) tty=(\S+)=$", re.M)
PREFIX = b"\x02"  # Ctrl-b, tmux's prefix (the test's HOME has no ~/.tmux.conf)


def _farm_toml(run: Any, pins: dict[str, str] | None = None) -> str:
    """The test hosts: h1's key pinned (host_key), the others through known_hosts; ``pins``
    pins a host to another key. Plus the local host ``here``."""
    pins = {"h1": run.host("h1").public_key, **(pins or {})}
    lines = []
    for host in run.hosts:
        fields = host.spec_fields()
        if host.name in pins:
            del fields["known_hosts"]
            fields["host_key"] = pins[host.name]
        lines.append(f"[hosts.{host.name}]")
        lines += [f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in fields.items()]
    return "\n".join([*lines, "[hosts.here]", 'driver = "local"', ""])


class Tmux:
    """A private tmux server (``-L``) for one test: query it, and kill it at the end."""

    def __init__(self, home: Path) -> None:
        self.socket = f"fh-test-{uuid.uuid4().hex[:8]}"
        home.mkdir(exist_ok=True)
        drop = ("TMUX", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")
        self.env = {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(home),
                    "TERM": "xterm", "SHELL": "/bin/sh", "PS1": "$ "}

    def __call__(self, *argv: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *argv], capture_output=True, text=True, env=self.env,
                              check=True, timeout=30).stdout

    def session(self) -> str:
        names = self("list-sessions", "-F", "#{session_name}").split()
        assert len(names) == 1, names
        return names[0]

    def panes(self) -> dict[str, str]:
        """@host -> pane id, for every pane of the session."""
        rows = self("list-panes", "-t", self.session(), "-F", "#{@host} #{pane_id}").splitlines()
        return dict(row.split(" ", 1) for row in rows)

    def screen(self, pane: str) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", pane)

    def show(self, what: str) -> str:
        return self("display-message", "-p", "-t", self.session(), what).strip()

    def kill(self) -> None:
        """The server and every pane's process gone, and its socket file removed."""
        where = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / self.socket
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env, timeout=30)
        where.unlink(missing_ok=True)


class Attached:
    """A command on a pseudo-terminal of a given size; bytes typed into it."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True)
        os.close(slave)
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        """Read what the client draws (unread, a full pty would stall it); panes are read
        with capture-pane instead."""
        while True:
            try:
                if not os.read(self.master, 65536):
                    return
            except OSError:
                return

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.drain.join(timeout=10)  # the client gone, reading ends
        os.close(self.master)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path / "home")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def attached() -> Iterator[Callable[..., Attached]]:
    made: list[Attached] = []

    def make(argv: list[str], cwd: Path, env: dict[str, str]) -> Attached:
        made.append(Attached(argv, cwd, env))
        return made[-1]

    try:
        yield make
    finally:
        for one in made:
            one.close()


def _shown(tmux: Tmux, pane: str) -> dict[str, str]:
    """What IDENTIFY printed in a pane: address -> tty."""
    return dict(SHOWN.findall(tmux.screen(pane)))


def _ready(tmux: Tmux, panes: dict[str, str]) -> bool:
    """Every pane shows a shell prompt (ssh logged in, the local shell started)."""
    return all(tmux.screen(pane).rstrip().endswith(("$", "#")) for pane in panes.values())


def test_cssh_broadcasts_toggles_and_zooms_through_tmux(make_farm: Callable[..., Farm], testhosts: Any,
                                                         tmux: Tmux, attached: Callable[..., Attached]) -> None:
    run = testhosts(3)
    farm = make_farm(_farm_toml(run))
    client = attached([*FARMHAND, "cssh", "h[1-3],here", "-L", tmux.socket], farm.folder, tmux.env)
    panes = wait_for(lambda: len(tmux.panes()) == 4 and tmux.panes(), 30, "a session with 4 panes")
    assert set(panes) == {"h1", "h2", "h3", "here"}
    wait_for(lambda: tmux.show("#{synchronize-panes}") == "1", 30, "broadcast on once the session is made")
    wait_for(lambda: _ready(tmux, panes), 60, "a prompt in every pane")

    client.type(IDENTIFY.encode() + b"\r")
    for host in ("h1", "h2", "h3", "here"):
        address = run.host(host).address if host != "here" else "here"
        seen = wait_for(lambda host=host: _shown(tmux, panes[host]), 30, f"{host}'s answer")
        assert list(seen) == [address], f"pane {host} shows its own host only: {seen}"
        assert seen[address].startswith("/dev/pts/"), "a real terminal on the far end (full-screen works)"

    client.type(PREFIX + b"b")
    wait_for(lambda: tmux.show("#{synchronize-panes}") == "0", 10, "broadcast off after prefix b")
    active = tmux.show("#{@host}")
    client.type(b"echo solo-$((6*7))\r")
    wait_for(lambda: "solo-42" in tmux.screen(panes[active]), 30, f"the line in {active}, the current pane")
    client.type(PREFIX + b"b")
    wait_for(lambda: tmux.show("#{synchronize-panes}") == "1", 10, "broadcast on again")
    client.type(b"echo all-$((6*8))\r")
    for host, pane in panes.items():
        wait_for(lambda pane=pane: "all-48" in tmux.screen(pane), 30, f"the second broadcast in {host}")
        if host != active:
            assert "solo" not in tmux.screen(pane), f"{host} got a line typed while broadcast was off"

    assert tmux.show("#{window_zoomed_flag}") == "0"
    client.type(PREFIX + b"o")
    wait_for(lambda: tmux.show("#{@host}") != active, 10, "another pane current after prefix o")
    other = tmux.show("#{@host}")
    client.type(PREFIX + b"z")
    wait_for(lambda: tmux.show("#{window_zoomed_flag}") == "1", 10, "zoomed after prefix z")
    assert tmux.show("#{@host}") == other, "zoom shows the current host"
    client.type(PREFIX + b"z")
    wait_for(lambda: tmux.show("#{window_zoomed_flag}") == "0", 10, "back to all panes after prefix z")

    client.type(PREFIX + b"d")
    assert client.process.wait(timeout=30) == 0, "detaching ends the client"
    again = subprocess.run([*FARMHAND, "cssh", "h1", "-L", tmux.socket, "--no-attach"], cwd=farm.folder,
                           env=tmux.env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already open" in again.stderr, again.stderr
    assert len(tmux.panes()) == 4, "the open session is kept, not replaced"


def test_cssh_refuses_a_host_whose_key_is_not_the_pinned_one(make_farm: Callable[..., Farm], testhosts: Any,
                                                             tmux: Tmux) -> None:
    run = testhosts(2)
    farm = make_farm(_farm_toml(run, pins={"h2": run.host("h1").public_key}))
    made = subprocess.run([*FARMHAND, "cssh", "h[1-2]", "-L", tmux.socket, "--no-attach"], cwd=farm.folder,
                          env=tmux.env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    panes = tmux.panes()
    wait_for(lambda: tmux("display-message", "-p", "-t", panes["h2"], "#{pane_dead}").strip() == "1", 30,
             "h2's ssh to give up")
    assert "Host key verification failed" in tmux.screen(panes["h2"])
    wait_for(lambda: tmux.screen(panes["h1"]).rstrip().endswith("$"), 30, "h1 logged in")
    assert tmux("display-message", "-p", "-t", panes["h1"], "#{pane_dead}").strip() == "0"
