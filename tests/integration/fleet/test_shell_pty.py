"""`farmhand shell` driven through a pseudo-terminal, as a person types at it: lines run on
every target and come back gathered, targets change mid-session, gathering toggles, a line
runs locally, Ctrl-D leaves."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.farmkit import FARMHAND, Farm
from tests.integration.fleet.conftest import hosts_toml

pytestmark = pytest.mark.slow


class Terminal:
    """A process on a pty: type lines, wait for text (with a deadline, never a bare sleep)."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True, env={**os.environ, "TERM": "dumb"})
        os.close(slave)
        self.seen = ""

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def expect(self, text: str, timeout: float = 30) -> str:
        """Everything read until ``text`` (consumed), or an AssertionError naming what came."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} within {timeout}s; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace").replace("\r\n", "\n")
                except OSError:  # the other side closed
                    break
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before + text

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    made: list[Terminal] = []

    def make(argv: list[str], cwd: str) -> Terminal:
        made.append(Terminal(argv, cwd))
        return made[-1]

    try:
        yield make
    finally:
        for term in made:
            term.close()


def test_shell_runs_each_line_on_every_target(make_farm: Callable[..., Farm], testhosts: Any,
                                              terminal: Callable[..., Terminal], tmp_path: Any) -> None:
    run = testhosts(4)
    farm = make_farm(hosts_toml(run))
    term = terminal([*FARMHAND, "shell", "h[1-3]"], str(farm.folder))
    term.expect("farmhand> ")
    term.type("echo same")
    assert "h[1-3] (3)\n" in term.expect("farmhand> ")
    term.type("+h4")
    assert "targets: h[1-4] (4)" in term.expect("farmhand> ")
    term.type("-h[1-2]")
    term.expect("farmhand> ")
    term.type("?")
    assert "targets: h[3-4] (2)" in term.expect("farmhand> ")
    term.type("=")
    assert "gathering off" in term.expect("farmhand> ")
    term.type("echo apart")
    shown = term.expect("farmhand> ")
    assert "h3: apart" in shown and "h4: apart" in shown
    marker = tmp_path / "ran-here"
    term.type(f"!touch {marker}")
    term.expect("farmhand> ")
    assert marker.exists(), "!CMD runs on this machine"
    term.type("@h9")
    assert "not hosts of this farm: h9" in term.expect("farmhand> ")
    os.write(term.master, b"\x04")  # Ctrl-D
    assert term.process.wait(timeout=30) == 0
