"""``GateDataPlane``: the controller's handle on one role's gate process.

It satisfies ``farmhand.dataplane.DataPlane``. The gate runs detached (own session, stdin
closed, output to ``gate-ROLE.log``) so the controller can die without dropping a client.
Finding it again is a pidfile plus a ping whose answer carries the same pid: a stale pidfile
or a recycled pid never passes for a gate, and a lock file keeps two controllers from
starting two gates at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from farmhand import control_channel
from farmhand.dataplane import Backend
from farmhand.errors import GateError, LbError
from farmhand.gate.config import GateConfig
from farmhand.gate.proxy import paths
from farmhand.spec.models import LbSpec

START_TIMEOUT = 15.0
LOCK_TIMEOUT = 30.0
MAX_SOCKET_PATH = 100


class GateDataPlane:
    """Start, adopt, steer and stop the gate in front of one role."""

    def __init__(self, role: str, lb: LbSpec, state_dir: Path) -> None:
        if lb.mode != "tcp":
            raise GateError(f'role {role}: gate = "smtp-delay" needs a tcp listener; set mode = "tcp" in [roles.{role}.lb]')
        self.role = role
        self.lb = lb
        self.state_dir = Path(state_dir)
        self.config = GateConfig.for_role(role, lb, self.state_dir)
        self.socket_path, self.pid_path = paths(self.state_dir, role)
        self.log_path = self.state_dir / f"gate-{role}.log"
        self.config_path = self.state_dir / f"gate-{role}.json"
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise GateError(f"state folder {self.state_dir} is too deep for a Unix socket; use a shorter path")
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<GateDataPlane {self.role} [{self.lb.listen} | {self.state_dir}]>"

    async def ensure_running(self) -> bool:
        """Adopt the running gate (sending it new options if they changed), or start one."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        async with self._lock():
            identity = await self._running_identity()
            if identity is not None and identity.get("wanted_listen") != self.lb.listen:
                await self._stop_pid(int(identity["pid"]))
                identity = None
            if identity is not None:
                if identity.get("options_hash") != self.config.options_hash():
                    await self._call({"op": "configure", "options": self.config.options.model_dump(mode="json")})
                return True
            await self._start()
            return False

    async def set_backends(self, backends: list[Backend]) -> None:
        await self._call({"op": "set_backends", "backends": [b.to_json() for b in backends]})

    async def active(self, name: str) -> int:
        return int((await self._call({"op": "active", "name": name}))["active"])

    async def stats(self) -> dict[str, Any]:
        """Counters per class (seen, passed, early_talkers, hung_up), gauges, backends; see
        ``Gate.snapshot``."""
        answer = await self._call({"op": "stats"})
        answer.pop("ok", None)
        return answer

    async def address(self) -> tuple[str, int]:
        """Where the gate listens now (the real port when the farm file said port 0)."""
        listen = (await self._call({"op": "ping"}))["listen"]
        host, _, port = str(listen).rpartition(":")
        return host.strip("[]"), int(port)

    async def stop(self) -> None:
        identity = await self._running_identity()
        if identity is not None:
            await self._stop_pid(int(identity["pid"]))

    # -- internals ----------------------------------------------------------------------

    async def _call(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        try:
            return await control_channel.call(self.socket_path, request, timeout=timeout)
        except LbError as error:
            raise GateError(f"gate of role {self.role}: {error} (is it running? see {self.log_path})") from error

    async def _running_identity(self) -> dict[str, Any] | None:
        """The ping answer of the gate named by the pidfile, if that process is the gate."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            answer = await control_channel.call(self.socket_path, {"op": "ping"}, timeout=2.0)
        except LbError:
            return None
        return answer if answer.get("pid") == pid else None

    async def _start(self) -> None:
        self.config_path.write_text(json.dumps(self.config.to_json(), indent=2) + "\n")
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        # Popen, not asyncio's subprocess: asyncio's transport kills its child when it is
        # closed, and this child must outlive the controller. Starting it does not block.
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "farmhand.gate.proxy", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                cwd=self.state_dir,
            )
        process = self._process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if process.poll() is not None:
                raise GateError(f"gate of role {self.role} exited at start ({process.returncode}): {self._log_tail()}")
            identity = await self._running_identity()
            if identity is not None and identity["pid"] == process.pid:
                return
            await asyncio.sleep(0.05)
        process.kill()
        raise GateError(f"gate of role {self.role} did not answer within {START_TIMEOUT:g}s: {self._log_tail()}")

    async def _stop_pid(self, pid: int) -> None:
        """Ask for a graceful stop, then wait (drain timeout + a margin) before SIGKILL."""
        try:
            await control_channel.call(self.socket_path, {"op": "stop"}, timeout=2.0)
        except LbError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lb.drain_timeout + 5.0
        while _alive(pid) and loop.time() < deadline:
            self._reap()
            await asyncio.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    @contextlib.asynccontextmanager
    async def _lock(self) -> AsyncIterator[None]:
        """One controller at a time starts or adopts this role's gate (flock, polled so
        the event loop is never blocked)."""
        lock_path = self.state_dir / f"gate-{self.role}.lock"
        try:
            async with control_channel.start_lock(lock_path, LOCK_TIMEOUT):
                yield
        except control_channel.LockBusy as error:
            raise GateError(f"gate of role {self.role}: another controller holds {lock_path}") from error


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def member_config(role: str, lb: LbSpec) -> dict[str, Any]:
    """The configuration file of a gate run on a load-balancer pair member (``lb/placed.py``
    writes it there, ``state_dir`` set to the member's folder): listening on every address at
    the listener's port, so a backup answers the moment the address arrives. Carries
    ``options_hash`` too (the gate ignores it), so the member can tell, as ``ensure_running``
    does, whether a gate it adopts needs the options again."""
    if lb.mode != "tcp":
        raise GateError(f'role {role}: gate = "smtp-delay" needs a tcp listener; set mode = "tcp" in [roles.{role}.lb]')
    config = GateConfig.for_role(role, lb, Path())
    _, port = lb.host_port
    return {**config.to_json(), "listen": f"0.0.0.0:{port}", "state_dir": "", "options_hash": config.options_hash()}
