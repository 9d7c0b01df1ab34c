"""The controller's handle on an HAProxy engine (Debian's haproxy 2.6) for one role.

HAProxy runs daemonized (own session) from ``RUN_DIR/haproxy.cfg`` and is steered through
its admin socket ``RUN_DIR/admin.sock``; a new handle adopts it when that socket answers.
Backend changes never reload: servers are added, drained, re-weighted and deleted with the
runtime API, and the config file is rewritten alongside (so a restarted HAProxy comes back
with the same servers). Only a change of other settings reloads, seamlessly (``-x`` takes
the listening sockets over from the old process, ``-sf`` lets it finish its connections).

A server left out of the wanted set is drained, then deleted once it has no sessions (or
``drain_timeout`` passed); that finishes in a background task and, should the handle be
dropped first, on the next ``set_backends``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from farmhand import control_channel
from farmhand.dataplane import Backend
from farmhand.errors import LbError
from farmhand.lb import owner
from farmhand.lb.haproxy import config as hc
from farmhand.lb.settings import EngineSettings, TlsSettings

START_TIMEOUT = 15.0
REMOVAL_POLL = 0.2


class HaproxyDataPlane:
    """``DataPlane`` for ``engine = "haproxy"``."""

    def __init__(self, settings: EngineSettings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.cfg = run_dir / "haproxy.cfg"
        self.admin_sock = run_dir / "admin.sock"
        self.pidfile = run_dir / "haproxy.pid"
        self.wanted_file = run_dir / "servers.json"
        self.log = run_dir / "haproxy.log"
        self.be = hc.backend_name(settings)
        self.removal_deadlines: dict[str, float] = {}
        self.removal_task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<HaproxyDataPlane {self.settings.role} {self.settings.listen} {self.run_dir}>"

    def _error(self, what: str) -> LbError:
        return LbError(f"{self.settings.where} (haproxy): {what} (files in {self.run_dir})")

    # -- the admin socket
    async def admin(self, command: str, timeout: float = 5.0) -> str:
        """One runtime API command; its whole answer."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(self.admin_sock))
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    answer = await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as error:
            raise self._error(f"admin socket did not answer {command.split()[0]!r} ({error}); run ensure_running") from error
        return answer.decode(errors="replace")

    async def _command(self, command: str, *, ok: tuple[str, ...] = ("",)) -> str:
        """A state-changing command; ``LbError`` unless its answer starts as expected."""
        answer = await self.admin(command)
        text = answer.strip()
        if not any(text.startswith(prefix) for prefix in ok):
            raise self._error(f"{command!r} was refused: {text}")
        return text

    async def _alive(self) -> bool:
        if not self.admin_sock.exists():
            return False
        try:
            return "Name: HAProxy" in await self.admin("show info", timeout=2.0)
        except LbError:
            return False

    async def _rows(self) -> list[dict[str, str]]:
        return hc.parse_stat(await self.admin("show stat"))

    # -- lifecycle
    def _wanted(self) -> list[Backend]:
        try:
            return [Backend.from_json(b) for b in json.loads(self.wanted_file.read_text())]
        except FileNotFoundError:
            return []

    def _render(self, backends: list[Backend]) -> str:
        return hc.render(self.settings, str(self.run_dir), backends, hc.max_connections())

    def _write_config(self, backends: list[Backend]) -> None:
        if self.settings.tls is not None:
            self._write_file(self.run_dir / "certs.list", hc.crt_list(self.settings))
            acme_map = self.run_dir / "acme.map"
            if not acme_map.exists():
                self._write_file(acme_map, "")
        tmp = self.cfg.with_suffix(".tmp")
        tmp.write_text(self._render(backends))
        tmp.replace(self.cfg)

    @staticmethod
    def _write_file(path: Path, text: str) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    async def set_tls(self, tls: TlsSettings) -> None:
        """Load new contents of the certificate files through the runtime API (``set ssl
        cert`` + ``commit ssl cert``, HAProxy 2.2+): new handshakes get them, no reload, no
        connection dropped. The files (and so the crt-list) stay the same; a changed list
        of files is a changed ``tls`` table, which restarts the balancer."""
        if self.settings.tls is None or [c.path for c in tls.certs] != [c.path for c in self.settings.tls.certs]:
            raise self._error("the certificate files changed, not only their contents: restart the balancer")
        async with self.lock:
            for entry in tls.certs:
                text = Path(entry.path).read_text().strip()
                answer = await self.admin(f"set ssl cert {entry.path} <<\n{text}\n")
                if "Transaction created" not in answer and "Transaction updated" not in answer:
                    await self.admin(f"abort ssl cert {entry.path}")
                    raise self._error(f"HAProxy refused the new {entry.path}: {answer.strip()}")
                answer = await self.admin(f"commit ssl cert {entry.path}")
                if "Success" not in answer:
                    raise self._error(f"HAProxy did not commit {entry.path}: {answer.strip()}")
            self.settings = self.settings.with_tls(tls)

    async def set_challenges(self, challenges: dict[str, str]) -> None:
        """Answer these ACME HTTP-01 tokens on the plain listener (``acme.map``, changed live)."""
        acme_map = self.run_dir / "acme.map"
        async with self.lock:
            self._write_file(acme_map, "".join(f"{token} {answer}\n" for token, answer in challenges.items()))
            await self._command(f"clear map {acme_map}")
            for token, answer in challenges.items():
                await self._command(f"add map {acme_map} {token} {answer}")

    async def ensure_running(self) -> bool:
        binary = shutil.which("haproxy")
        if binary is None:
            raise self._error("haproxy is not installed; install the Debian package (scripts/bootstrap does) or set engine = \"builtin\"")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with self._start_lock():
            wanted = self._wanted()
            if await self._alive():
                current = self.cfg.read_text() if self.cfg.exists() else ""
                if self._settings_part(current) != self._settings_part(self._render(wanted)):
                    await self._launch(binary, wanted, reload=True)
                return True
            self._check_address_free()
            await self._launch(binary, wanted, reload=False)
            return False

    def _check_address_free(self) -> None:
        """A fresh HAProxy must not start where another balancer listens (``owner``)."""
        host, port = self.settings.listen_host, self.settings.listen_port
        if port and (taken := owner.probe(host, port)) is not None:
            if owner.is_in_use(taken):
                raise self._error(owner.in_use(self.settings.listen, host, port))
            raise self._error(f"cannot listen on {self.settings.listen} ({taken.strerror or taken}); change lb.listen")

    @staticmethod
    def _settings_part(text: str) -> list[str]:
        """The config without its server lines (those change live, never by reload)."""
        return [line for line in text.splitlines() if not line.lstrip().startswith("server ")]

    async def _launch(self, binary: str, wanted: list[Backend], *, reload: bool) -> None:
        self._write_config(wanted)
        check = await self._run(binary, "-c", "-f", str(self.cfg))
        if check[0] != 0:
            raise self._error(f"generated config rejected (haproxy -c exit status {check[0]}): {check[1]}")
        args = [binary, "-D", "-f", str(self.cfg)]
        old_pid = self._pid()
        if reload and old_pid is not None:
            args += ["-x", str(self.admin_sock), "-sf", str(old_pid)]
        code, output = await self._run(*args)
        if code != 0:
            raise self._error(f"haproxy did not start: {output or f'exit status {code}'}")
        deadline = time.monotonic() + START_TIMEOUT
        while not (await self._alive() and self._pid() != (old_pid if reload else None)):
            if time.monotonic() > deadline:
                raise self._error(f"haproxy did not answer on {self.admin_sock} within {START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
        await self._apply(wanted)

    async def _run(self, *args: str) -> tuple[int, str]:
        # Output goes straight to the log file, not through a pipe: a daemonising haproxy may
        # keep inherited descriptors open (uvloop's spawn leaves extra ones), so waiting for a
        # pipe's EOF could wait for haproxy's whole life.
        with open(self.log, "ab") as log:
            start = log.tell()
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            await proc.wait()
        with open(self.log, "rb") as log:
            log.seek(start)
            out = log.read()
        lines = [line for line in out.decode(errors="replace").splitlines() if "ALERT" in line or "error" in line.lower()]
        return proc.returncode or 0, " / ".join(lines[-3:])

    def _pid(self) -> int | None:
        try:
            text = self.pidfile.read_text().split()
        except FileNotFoundError:
            return None
        if not text or not text[0].isdigit():
            return None
        pid = int(text[0])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"haproxy" in cmdline else None

    @contextlib.asynccontextmanager
    async def _start_lock(self) -> AsyncIterator[None]:
        async with self.lock:
            try:
                async with control_channel.start_lock(self.run_dir / "start.lock", START_TIMEOUT):
                    yield
            except control_channel.LockBusy as error:
                raise self._error("another process holds the start lock") from error

    async def stop(self) -> None:
        if self.removal_task is not None:
            self.removal_task.cancel()
        pid = self._pid()
        if pid is None:
            return
        grace = min(self.settings.drain_timeout, 10.0)
        for signum, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while self._pid() == pid and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self._pid() != pid:
                break
        with contextlib.suppress(FileNotFoundError):
            self.admin_sock.unlink()

    # -- backends
    async def set_backends(self, backends: list[Backend]) -> None:
        names = [hc.server_name(b.name) for b in backends]
        if len(set(names)) != len(names):
            raise self._error(f"backend names must be unique (after mapping to HAProxy names): {names}")
        async with self.lock:
            tmp = self.wanted_file.with_suffix(".tmp")
            tmp.write_text(json.dumps([b.to_json() for b in backends]))
            tmp.replace(self.wanted_file)
            self._write_config(backends)
            await self._apply(backends)

    async def _apply(self, backends: list[Backend]) -> None:
        current = hc.server_rows(await self._rows(), self.be)
        for backend in backends:
            sname = hc.server_name(backend.name)
            server = current.get(sname)
            where = f"{self.be}/{sname}"
            if server is None or (sname in self.removal_deadlines and server.addr != hc.address(backend.host, backend.port)):
                if server is not None:  # a new node under a removing node's name: finish that first
                    await self._remove_now(sname)
                await self._command(
                    f"add server {where} {hc.address(backend.host, backend.port)} "
                    f"{hc.server_options(self.settings, backend.weight)}",
                    ok=("New server registered",),
                )
                await self._command(f"enable health {where}")
                await self._command(f"set server {where} state {backend.state}")
                continue
            self.removal_deadlines.pop(sname, None)
            if server.addr != hc.address(backend.host, backend.port):
                await self._command(f"set server {where} addr {backend.host} port {backend.port}")
            if hc._int(server.row.get("uweight") or str(server.weight)) != backend.weight:
                await self._command(f"set server {where} weight {backend.weight}")
            if server.admin_state != backend.state:
                await self._command(f"set server {where} state {backend.state}")
        wanted = {hc.server_name(b.name) for b in backends}
        for sname, server in current.items():
            if sname not in wanted and sname not in self.removal_deadlines:
                if server.admin_state == "ready":
                    await self._command(f"set server {self.be}/{sname} state drain")
                self.removal_deadlines[sname] = time.monotonic() + self.settings.drain_timeout
        if self.removal_deadlines:
            await self._finish_removals()
            if self.removal_deadlines and (self.removal_task is None or self.removal_task.done()):
                self.removal_task = asyncio.create_task(self._removals_loop())

    async def _finish_removals(self) -> None:
        current = hc.server_rows(await self._rows(), self.be)
        for sname, deadline in list(self.removal_deadlines.items()):
            server = current.get(sname)
            if server is None:
                self.removal_deadlines.pop(sname, None)
            elif (server.scur == 0 and server.qcur == 0) or time.monotonic() > deadline:
                await self._remove_now(sname)

    async def _remove_now(self, sname: str) -> None:
        where = f"{self.be}/{sname}"
        await self.admin(f"set server {where} state maint")
        await self.admin(f"shutdown sessions server {where}")
        answer = (await self.admin(f"del server {where}")).strip()
        if answer.startswith("Server deleted") or "No such server" in answer:
            self.removal_deadlines.pop(sname, None)

    async def _removals_loop(self) -> None:
        while self.removal_deadlines:
            await asyncio.sleep(REMOVAL_POLL)
            async with self.lock:
                with contextlib.suppress(LbError):
                    await self._finish_removals()

    async def active(self, name: str) -> int:
        server = hc.server_rows(await self._rows(), self.be).get(hc.server_name(name))
        return 0 if server is None else server.scur + server.qcur

    async def stats(self) -> dict[str, Any]:
        wanted = {hc.server_name(b.name): b for b in self._wanted()}
        return hc.summarize(self.settings, await self._rows(), wanted, set(self.removal_deadlines))
