"""The controller's handle on the builtin engine (``farmhand.lb.builtin.engine``).

The handle holds no state worth losing: everything lives in the engine process and in
``RUN_DIR`` (``engine.json``, ``engine.pid``, ``control.sock``, ``engine.log``). A controller
that was killed builds a new handle, and ``ensure_running`` finds the engine by its control
socket (adopting it: no second engine, no dropped connection) or starts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from farmhand import control_channel
from farmhand.dataplane import Backend
from farmhand.errors import LbError
from farmhand.lb.builtin.engine import write_settings
from farmhand.lb.settings import EngineSettings, TlsSettings

START_TIMEOUT = 30.0
SOCKET_PATH_MAX = 107


class BuiltinDataPlane:
    """``DataPlane`` for ``engine = "builtin"``."""

    def __init__(self, settings: EngineSettings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.control = run_dir / "control.sock"
        self.log = run_dir / "engine.log"
        self.pidfile = run_dir / "engine.pid"

    def __repr__(self) -> str:
        return f"<BuiltinDataPlane {self.settings.role} {self.settings.listen} {self.run_dir}>"

    def _error(self, what: str) -> LbError:
        return LbError(f"{self.settings.where}: {what} (engine log: {self.log})")

    async def _call(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        try:
            answer = await control_channel.call(self.control, request, timeout=timeout)
        except LbError as error:
            raise self._error(f"{error}; run ensure_running (farmhand up) to start or adopt it") from error
        answer.pop("ok", None)
        return answer

    async def _ping(self) -> dict[str, Any] | None:
        if not self.control.exists():
            return None
        try:
            return await control_channel.call(self.control, {"op": "ping"}, timeout=3.0)
        except LbError:
            return None

    async def ensure_running(self) -> bool:
        if len(str(self.control)) > SOCKET_PATH_MAX:
            raise self._error(f"the state folder path is too long for a Unix socket ({self.control}); move the farm to a shorter path")
        answer = await self._ping()
        if answer is not None and not self._needs_restart(answer):
            await self._adopt(answer)
            return True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with self._start_lock():
            answer = await self._ping()  # someone else may have started it meanwhile
            if answer is not None:
                if not self._needs_restart(answer):
                    await self._adopt(answer)
                    return True
                await self.stop()  # listen address, mode or workers changed: a new engine
            await self._start()
            return False

    def _needs_restart(self, answer: dict[str, Any]) -> bool:
        return list(answer.get("restart_key", [])) != list(self.settings.restart_key())

    async def _adopt(self, answer: dict[str, Any]) -> None:
        """Keep the running engine; hand it settings that changed and apply live."""
        if answer.get("fingerprint") != self.settings.fingerprint():
            await self._call({"op": "configure", "settings": self.settings.to_json()})

    async def _start(self) -> None:
        settings_path = self.run_dir / "engine.json"
        write_settings(settings_path, self.settings)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "farmhand.lb.engine", str(settings_path),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                _, err = await proc.communicate()
        except TimeoutError as error:
            proc.kill()
            raise self._error(f"the engine did not report ready within {START_TIMEOUT:.0f}s") from error
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise self._error(f"the engine did not start: {reason}")

    @contextlib.asynccontextmanager
    async def _start_lock(self) -> AsyncIterator[None]:
        """Serialise starts between handles (two controllers racing must not start two)."""
        try:
            async with control_channel.start_lock(self.run_dir / "start.lock", START_TIMEOUT):
                yield
        except control_channel.LockBusy as error:
            raise self._error("another process holds the start lock") from error

    async def set_tls(self, tls: TlsSettings) -> None:
        """Load new certificate files into every worker (the same listener, nothing dropped);
        ``LbError`` if they do not load, and the old ones go on serving."""
        settings = self.settings.with_tls(tls)
        await self._call({"op": "configure", "settings": settings.to_json()})
        self.settings = settings

    async def set_challenges(self, challenges: dict[str, str]) -> None:
        """Answer these ACME HTTP-01 tokens (token -> key authorization) on the plain listener."""
        await self._call({"op": "set_challenges", "challenges": challenges})

    async def set_backends(self, backends: list[Backend]) -> None:
        await self._call({"op": "set_backends", "backends": [b.to_json() for b in backends]})

    async def active(self, name: str) -> int:
        return int((await self._call({"op": "active", "name": name}))["active"])

    async def stats(self) -> dict[str, Any]:
        return await self._call({"op": "stats"})

    def _running_pid(self) -> int | None:
        """The engine's pid while it holds its pidfile lock, else None."""
        try:
            handle = open(self.pidfile)  # noqa: SIM115
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else None
            return None

    async def stop(self) -> None:
        grace = min(self.settings.drain_timeout, 10.0)
        with contextlib.suppress(LbError):
            await control_channel.call(self.control, {"op": "stop", "grace": grace}, timeout=3.0)
        deadline = time.monotonic() + grace + 5.0
        signalled = False
        while (pid := self._running_pid()) is not None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                await asyncio.sleep(0.1)
                if self._running_pid() is not None:
                    raise self._error(f"the engine (pid {pid}) does not stop; kill it by hand")
                break
            if not signalled and time.monotonic() > deadline - grace - 2.0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                signalled = True
            await asyncio.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
