"""Run real farms in tests: a temp folder with a farm file and the demo app, the real
`farmhand` command, and a cleanup that kills every process the farm made even when the
test failed (found by the farm id every node carries in its environment)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from farmhand.store.statedir import StateDir

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "app.py"
FARMHAND = [sys.executable, "-m", "farmhand"]


def free_port() -> int:
    """A port nothing listens on now (for a test's listener on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll until ``condition()`` is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # the condition may read a half-started farm
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


class Farm:
    def __init__(self, folder: Path, farm_toml: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(APP, folder / "app.py")
        self.file = folder / "farm.toml"
        self.file.write_text(farm_toml)
        self.state = StateDir.beside(self.file)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*FARMHAND, *args], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"farmhand {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def up(self, timeout: float = 60) -> None:
        """`up --detach`, waiting at most ``timeout`` for every node to be ready (a deadline:
        JVM farms on two shared cores need more than the default)."""
        self.cli("up", "--detach", "farm.toml", "--timeout", f"{timeout:g}", timeout=timeout + 60)

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def events(self) -> list[dict[str, Any]]:
        lines = self.cli("events", "--json", "-n", "10000").stdout.splitlines()
        return [json.loads(line) for line in lines]

    def api(self) -> tuple[str, str]:
        info = self.state.read_api()
        return info["url"], self.state.token_file.read_text().strip()

    def post(self, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> httpx.Response:
        url, real_token = self.api()
        given = token if token is not None else real_token
        headers = {"Authorization": f"Bearer {given}"} if given else {}
        return httpx.post(url + path, json=body or {}, headers=headers, timeout=30, trust_env=False)

    def nodes(self, role: str | None = None) -> list[dict[str, Any]]:
        return [n for n in self.status()["nodes"] if role is None or n["role"] == role]

    def ready_nodes(self, role: str) -> list[dict[str, Any]]:
        return [n for n in self.nodes(role) if n["state"] == "running"]

    def wait_ready(self, role: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        def settled() -> list[dict[str, Any]] | None:
            nodes = self.nodes(role)
            ready = [n for n in nodes if n["state"] == "running"]
            return ready if len(ready) == count and len(nodes) == count else None

        result: list[dict[str, Any]] = wait_for(settled, timeout, f"{count} ready {role} nodes and no others")
        return result

    def controller_pid(self) -> int:
        return int(self.state.read_api()["pid"])

    def farm_processes(self) -> list[psutil.Process]:
        """Every process that belongs to this farm: nodes (tagged by farm id) and anything
        else started with the farm's folder in its command line (controller, load balancers)."""
        found = []
        farm_id = self.state.farm_id
        # data planes may live in a short folder linked from .farmhand/ (socket path limits)
        markers = [str(self.folder)] + [str(link.resolve()) for link in self.state.path.glob("*/*") if link.is_symlink()]
        for process in psutil.process_iter():
            try:
                if process.pid == os.getpid():
                    continue
                environ = process.environ()
                cmdline = " ".join(process.cmdline())
            except (psutil.Error, OSError):
                continue
            try:
                cwd = process.cwd()
            except (psutil.Error, OSError):
                cwd = ""
            if (environ.get("FARMHAND_FARM") == farm_id or any(marker in cmdline for marker in markers)
                    or cwd.startswith(str(self.folder))):
                found.append(process)
        return found

    def cleanup(self) -> None:
        """Stop the farm politely if it answers, then kill whatever of it is left."""
        try:
            if self.state.api_file.exists():
                self.cli("down", "--timeout", "20", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for process in self.farm_processes():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.kill()
            except psutil.Error:
                pass
