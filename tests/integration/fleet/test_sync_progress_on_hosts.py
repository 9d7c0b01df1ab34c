"""`farmhand sync`'s one progress bar for all hosts together, on a terminal (a pty), and the
plain summary elsewhere, on test hosts."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import FARMHAND, Farm
from tests.integration.fleet.conftest import hosts_toml

pytestmark = pytest.mark.slow

FILES = 20


def _tree(folder: Path) -> Path:
    folder.mkdir()
    for index in range(FILES):
        (folder / f"f{index}.txt").write_text(f"file {index}\n" * 1000)
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _on_a_terminal(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with a 200-column pty as its terminal; its exit status and all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    process = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                               env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"})
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        return process.wait(timeout=30), seen.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(master)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_one_bar_for_all_hosts_on_a_terminal_and_a_summary_elsewhere(make_farm: Callable[..., Farm],
                                                                      testhosts: Any, tmp_path: Path) -> None:
    run = testhosts(3)
    farm = make_farm(hosts_toml(run))
    source = _tree(tmp_path / "src")
    tmp_path.chmod(0o755)
    dest = f"{run.dir}/{{host}}/base/app"
    entries = 3 * (FILES + 1)  # every host's file list: the files and the folder itself

    status, shown = _on_a_terminal([*FARMHAND, "sync", "h[1-3]", str(source), dest], farm.folder)
    screen = _plain(shown)
    assert status == 0, screen
    assert f"{entries}/{entries} files" in screen and "3/3 hosts done" in screen, screen
    assert "sync h[1-3]" in screen, "one bar, named by the whole target"
    assert f"3 hosts: {3 * FILES} files" in screen

    (source / "f3.txt").write_text("changed\n")
    plain = farm.cli("sync", "h[1-3]", str(source), dest)
    assert "\x1b[" not in plain.stdout and "hosts done" not in plain.stdout, "no bar when stdout is not a terminal"
    assert plain.stdout.rstrip().endswith(f"3 hosts: 3 files (24 bytes) transferred, {entries} entries checked")
    assert all((run.dir / h.name / "base" / "app" / "current" / "f3.txt").read_text() == "changed\n"
               for h in run.hosts)
