"""The builtin engine's supervisor: the process the controller starts, finds and steers.

``python -m farmhand.lb.engine RUN_DIR/engine.json`` (an entry that runs ``main`` here)
daemonizes (own session, std streams to ``engine.log``), takes an exclusive lock on ``engine.pid`` for its whole life (so there is
never a second engine for a role), binds one SO_REUSEPORT listening socket per worker
(after probing that no other balancer or program holds the address: ``owner``),
starts the workers, answers the control socket ``control.sock``, and only then tells its
starter "ok" through a pipe; the starter exits 0, or 1 with the reason on stderr.

The supervisor owns the wanted backend set and the ejections: a set_backends goes to every
worker; an ejection reported by one worker goes to all and starts the active check
(``health.Readmitter``); a readmission goes to all. A worker that dies is started again on
the same listening socket (kept open here, so connections queued meanwhile are served) and
given the current set before it counts as ready: at once after a first death, with a
growing delay only while it keeps dying young. Stats and ``active`` are summed across
workers (``stats.merge``); a dead worker's last reported counters are kept
(``stats.Retired``) so totals never go backwards, and each death is counted
(``worker_restarts``) and listed (``worker_deaths``) for the controller and Prometheus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvloop

from farmhand import control_channel
from farmhand.lb import owner
from farmhand.lb.builtin import stats as lb_stats
from farmhand.lb.builtin.health import Readmitter
from farmhand.lb.builtin.link import Link, Message, open_link
from farmhand.lb.settings import EngineSettings

READY_TIMEOUT = 20.0
RESTART_BACKOFF_MAX = 5.0
QUICK_DEATH = 10.0
"""A worker that dies within this many seconds of its start counts towards the backoff."""
DEATHS_KEPT = 10
"""Recent worker deaths reported in stats (``worker_deaths``)."""


class EngineError(Exception):
    """Startup failed; the message is what the starter reports to the controller."""


class WorkerProcess:
    """One worker: its listening socket (kept across restarts), process and link."""

    def __init__(self, supervisor: Supervisor, index: int, listener: socket.socket,
                 tls_listener: socket.socket | None = None) -> None:
        self.supervisor = supervisor
        self.index = index
        self.listener = listener
        self.tls_listener = tls_listener
        self.proc: asyncio.subprocess.Process | None = None
        self.link: Link | None = None
        self.ready = False
        self.ready_event = asyncio.Event()
        self.started_at = 0.0
        self.last: Message | None = None
        """This process's last stats answer: folded into the retired totals when it dies."""

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def start(self) -> None:
        self.last = None
        self.ready = False
        self.ready_event = asyncio.Event()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listen_fd = self.listener.fileno()
        fds = [listen_fd, theirs.fileno()]
        tls_args: list[str] = []
        if self.tls_listener is not None:
            fds.append(self.tls_listener.fileno())
            tls_args = ["--tls-fd", str(self.tls_listener.fileno())]
        self.started_at = time.monotonic()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "farmhand.lb.worker",
                "--listen-fd", str(listen_fd), "--link-fd", str(theirs.fileno()), *tls_args,
                str(self.supervisor.settings_path),
                pass_fds=tuple(fds),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.link = await open_link(ours, self._on_message, self._on_link_closed)

    def _on_message(self, message: Message) -> Message | None:
        event = message.get("event")
        if event == "ready":
            assert self.link is not None
            self.supervisor.brief(self.link)
            self.ready = True
            self.ready_event.set()
        elif event == "eject":
            self.supervisor.ejected_by_worker(str(message["name"]))
        return None

    def _on_link_closed(self) -> None:
        self.ready = False

    async def request(self, message: Message) -> Message | None:
        """Ask this worker; None when it is not ready or does not answer (it is restarting)."""
        if not self.ready or self.link is None:
            return None
        pid = self.pid
        try:
            answer = await self.link.request(message)
        except (ConnectionError, TimeoutError):
            return None
        if message.get("op") == "stats" and self.pid == pid and self.proc is not None and self.proc.returncode is None:
            self.last = answer
        return answer


class Supervisor:
    def __init__(self, settings: EngineSettings, settings_path: Path) -> None:
        self.settings = settings
        self.settings_path = settings_path
        self.run_dir = settings_path.parent
        self.backends: list[dict[str, Any]] = []
        self.ejected: set[str] = set()
        self.workers: list[WorkerProcess] = []
        self.readmitter = Readmitter(settings.check, self.readmit)
        self.stopping = asyncio.Event()
        self.stop_grace = min(settings.drain_timeout, 10.0)
        self.window = lb_stats.Window()
        self.listen = settings.listen
        self.watchers: list[asyncio.Task[None]] = []
        self.retired = lb_stats.Retired()
        self.worker_restarts = 0
        self.deaths: deque[dict[str, Any]] = deque(maxlen=DEATHS_KEPT)
        self.challenges: dict[str, str] = {}
        self.tls_listen: str | None = None
        self.tls_sockets: list[socket.socket | None] = []

    # -- startup
    def bind(self) -> list[socket.socket]:
        """The plain listener's sockets (one per worker); with ``tls``, ``tls_sockets`` too."""
        sockets, self.listen = self._bind_group(self.settings.listen_host, self.settings.listen_port, self.settings.listen)
        self.tls_sockets = [None] * len(sockets)
        tls = self.settings.tls
        if tls is not None:
            try:
                tls_sockets, self.tls_listen = self._bind_group(tls.listen_host, tls.listen_port, tls.listen)
            except EngineError:
                for sock in sockets:
                    sock.close()
                raise
            self.tls_sockets = list(tls_sockets)
        return sockets

    def _bind_group(self, host: str, port: int, listen: str) -> tuple[list[socket.socket], str]:
        """One SO_REUSEPORT socket per worker, after proving the address is nobody else's.

        SO_REUSEPORT would let another balancer join the group and split the traffic, so
        the address is first probed without it, under the per-user bind lock
        (``farmhand.lb.owner``): only this engine's workers ever share the port.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets: list[socket.socket] = []
        with owner.bind_lock():
            try:
                if port and (taken := owner.probe(host, port)) is not None:
                    raise taken
                for _ in range(self.settings.workers):
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    sockets.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    sock.bind((host, port))
                    port = sock.getsockname()[1]  # listen ":0" picks one port for every worker
                    sock.listen(1024)
            except OSError as error:
                for sock in sockets:
                    sock.close()
                if owner.is_in_use(error):
                    raise EngineError(owner.in_use(listen, host, port)) from error
                raise EngineError(
                    f"cannot listen on {listen} ({error.strerror or error}); "
                    "change lb.listen (or lb.tls.listen) to an address this machine has and you may use"
                ) from error
        return sockets, (f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}")

    async def start(self) -> None:
        listeners = self.bind()
        self.workers = [WorkerProcess(self, i, sock, self.tls_sockets[i]) for i, sock in enumerate(listeners)]
        for worker in self.workers:
            await worker.start()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await asyncio.gather(*(w.ready_event.wait() for w in self.workers))
        except TimeoutError as error:
            raise EngineError("its workers did not report ready") from error
        self.watchers = [asyncio.create_task(self.watch(worker)) for worker in self.workers]

    async def watch(self, worker: WorkerProcess) -> None:
        """Restart a worker that exits while the engine is not stopping: at once the first
        time, with a growing delay only while it keeps dying young (a crash loop)."""
        quick_deaths = 0
        while not self.stopping.is_set():
            assert worker.proc is not None
            pid = worker.proc.pid
            code = await worker.proc.wait()
            if self.stopping.is_set():
                return
            lived = time.monotonic() - worker.started_at
            death = self.worker_died(worker, pid, code, lived)
            quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH else 1
            delay = 0.0 if quick_deaths <= 1 else min(0.1 * 2 ** (quick_deaths - 2), RESTART_BACKOFF_MAX)
            held = "unknown" if death["connections"] is None else death["connections"]
            print(
                f"worker {worker.index} (pid {pid}) {death['how']} after {lived:.1f}s holding {held} "
                f"connections; restarting{f' in {delay:.1f}s' if delay else ''}",
                flush=True,
            )
            if delay:
                await asyncio.sleep(delay)
            with contextlib.suppress(OSError):
                await worker.start()

    def worker_died(self, worker: WorkerProcess, pid: int, code: int, lived: float) -> dict[str, Any]:
        """Keep the dead worker's counts (``Retired``) and note its death for ``stats``."""
        last, worker.last = worker.last, None
        worker.ready = False
        if last is not None:
            self.retired.fold(last)
        connections = None if last is None else int(last["listener"].get("active", 0))
        death = {
            "worker": worker.index,
            "pid": pid,
            "exit_status": code if code >= 0 else None,
            "signal": -code if code < 0 else None,
            "how": f"was killed by signal {-code}" if code < 0 else f"exited with status {code}",
            "connections": connections,
            "lived_s": round(lived, 1),
            "at": time.time(),
        }
        self.deaths.append(death)
        self.worker_restarts += 1
        return death

    # -- what workers are told
    def brief(self, link: Link) -> None:
        """Bring a (re)started worker up to date before it counts as ready."""
        link.send({"op": "configure", "settings": self.settings.to_json()})
        link.send({"op": "set_backends", "backends": self.backends, "ejected": sorted(self.ejected)})
        if self.challenges:
            link.send({"op": "set_challenges", "challenges": self.challenges})

    def broadcast(self, message: Message) -> None:
        for worker in self.workers:
            if worker.ready and worker.link is not None:
                worker.link.send(message)

    async def ask_all(self, message: Message) -> list[Message]:
        answers = await asyncio.gather(*(w.request(message) for w in self.workers))
        return [a for a in answers if a is not None]

    def ejected_by_worker(self, name: str) -> None:
        record = next((b for b in self.backends if b["name"] == name), None)
        if record is None or name in self.ejected:
            return
        self.ejected.add(name)
        self.broadcast({"op": "eject", "name": name})
        self.readmitter.watch(name, record["host"], int(record["port"]))

    def readmit(self, name: str) -> None:
        if name in self.ejected:
            self.ejected.discard(name)
            self.broadcast({"op": "readmit", "name": name})

    # -- control channel
    async def handle(self, request: Message) -> Message:
        op = request.get("op")
        if op == "ping":
            return {
                "pid": os.getpid(),
                "role": self.settings.role,
                "listen": self.listen,
                "tls_listen": self.tls_listen,
                "mode": self.settings.mode,
                "workers": sum(1 for w in self.workers if w.ready),
                "fingerprint": self.settings.fingerprint(),
                "restart_key": list(self.settings.restart_key()),
            }
        if op == "set_backends":
            self.set_backends(list(request["backends"]))
            await self.ask_all({"op": "ping"})  # every worker has applied it when this returns
            return {}
        if op == "active":
            answers = await self.ask_all({"op": "active", "name": request["name"]})
            return {"active": sum(int(a["active"]) for a in answers)}
        if op == "stats":
            answers = await self.ask_all({"op": "stats"})
            merged = lb_stats.merge(self.settings, self.listen, answers, self.ejected, self.window, self.retired)
            merged["worker_restarts"] = self.worker_restarts
            merged["worker_deaths"] = list(self.deaths)
            return merged
        if op == "configure":
            self.configure(EngineSettings.from_json(request["settings"]))
            await self.ask_all({"op": "ping"})  # every worker has applied it (new certificates too)
            return {}
        if op == "set_challenges":
            self.challenges = {str(k): str(v) for k, v in request["challenges"].items()}
            self.broadcast({"op": "set_challenges", "challenges": self.challenges})
            await self.ask_all({"op": "ping"})
            return {}
        if op == "stop":
            self.stop_grace = float(request.get("grace", self.stop_grace))
            asyncio.get_running_loop().call_soon(self.stopping.set)
            return {}
        raise ValueError(f"unknown op {op!r}")

    def set_backends(self, backends: list[dict[str, Any]]) -> None:
        names = [str(b["name"]) for b in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names}")
        old = {b["name"]: (b["host"], int(b["port"])) for b in self.backends}
        new = {b["name"]: (b["host"], int(b["port"])) for b in backends}
        for name in list(self.ejected):
            if old.get(name) != new.get(name):  # gone, or a new node under the same name
                self.ejected.discard(name)
                self.readmitter.forget(name)
        self.backends = backends
        self.broadcast({"op": "set_backends", "backends": backends, "ejected": sorted(self.ejected)})

    def configure(self, settings: EngineSettings) -> None:
        if settings.restart_key() != self.settings.restart_key():
            raise ValueError("listen, tls.listen, mode and workers change only by restarting the engine")
        if settings.tls is not None and (self.settings.tls is None or settings.tls.version != self.settings.tls.version):
            from farmhand.lb.builtin.certificates import Certificates

            try:
                Certificates(settings.tls)  # refused here, the workers go on with the old ones
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"the new certificates do not load: {error}") from error
        self.settings = settings
        self.readmitter.check = settings.check
        write_settings(self.settings_path, settings)
        self.broadcast({"op": "configure", "settings": settings.to_json()})

    # -- shutdown
    async def shutdown(self) -> None:
        self.readmitter.forget_all()
        self.broadcast({"op": "stop", "grace": self.stop_grace})
        procs = [w.proc for w in self.workers if w.proc is not None]
        try:
            async with asyncio.timeout(self.stop_grace + 3):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
        for worker in self.workers:
            worker.listener.close()
            if worker.tls_listener is not None:
                worker.tls_listener.close()


def write_settings(path: Path, settings: EngineSettings) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings.to_json(), indent=2))
    tmp.replace(path)


def lock_pidfile(path: Path) -> Any:
    """Hold an exclusive lock on the pidfile for the process's life; EngineError if taken."""
    handle = open(path, "a+")  # noqa: SIM115 - kept open (and locked) until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise EngineError(f"an engine already runs here (pid {pid}) but did not answer; stop it (kill {pid}) and retry") from error
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def run(settings_path: Path, notify: int | None) -> int:
    settings = EngineSettings.from_json(json.loads(settings_path.read_text()))
    run_dir = settings_path.parent
    supervisor = Supervisor(settings, settings_path)
    try:
        pidfile = lock_pidfile(run_dir / "engine.pid")
        await supervisor.start()
        server = await control_channel.serve(run_dir / "control.sock", supervisor.handle)
    except (EngineError, OSError) as error:
        _notify(notify, f"error: {error}")
        await supervisor.shutdown()
        return 1
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, supervisor.stopping.set)
    https = f" and HTTPS on {supervisor.tls_listen}" if supervisor.tls_listen else ""
    print(f"engine {os.getpid()} serving {supervisor.listen}{https} with {settings.workers} workers", flush=True)
    _notify(notify, f"ok {os.getpid()} {supervisor.listen}")
    await supervisor.stopping.wait()
    print("engine stopping", flush=True)
    server.close()
    await supervisor.shutdown()
    with contextlib.suppress(FileNotFoundError):
        (run_dir / "control.sock").unlink()
    pidfile.close()
    return 0


def _notify(fd: int | None, text: str) -> None:
    if fd is None:
        print(text, file=sys.stderr, flush=True)
        return
    with contextlib.suppress(OSError):
        os.write(fd, text.encode() + b"\n")
        os.close(fd)


def daemonize(log_path: Path) -> int | None:
    """Fork into a new session; the parent relays the child's verdict and exits.

    Returns the write end of the verdict pipe in the child.
    """
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
        verdict = b"".join(chunks).decode(errors="replace").strip()
        if verdict.startswith("ok"):
            print(verdict)
            os._exit(0)
        print(verdict.removeprefix("error: ") or f"the engine exited before it was ready; see {log_path}", file=sys.stderr)
        os._exit(1)
    os.close(read_end)
    os.setsid()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    # Descriptors inherited from whoever started us (uvloop's spawn leaves its stdio pipes
    # open here) would keep the starter's pipes open, and it would wait for EOF forever.
    os.closerange(3, write_end)
    os.closerange(write_end + 1, 65536)
    return write_end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farmhand.lb.engine")
    parser.add_argument("settings", type=Path, help="engine.json written by the controller's handle")
    parser.add_argument("--foreground", action="store_true", help="do not detach (for debugging)")
    args = parser.parse_args(argv)
    settings_path = args.settings.resolve()
    notify = None if args.foreground else daemonize(settings_path.parent / "engine.log")
    return uvloop.run(run(settings_path, notify))


if __name__ == "__main__":
    sys.exit(main())
