"""One worker process per CPU core for a cold ``farmhand exec`` (issue 13).

Why: cold, every SSH host costs the client a handshake (key exchange, signatures, packet
work). One Python process does them all on one core, while clush and pssh run one ssh per
host and get many processes' share of the machine. So the SSH hosts are dealt out to forked
workers, each with its own asyncio loop and ``SshExecutor``s; the parent keeps one proxy per
host, whose ``exec`` sends (host, command, timeout) to the host's worker and waits for that
host's answer. ``run_all`` (fanout, streamed ``host: `` lines, gathering, timeouts, exit
statuses, the progress line) runs in the parent unchanged. The parent is one of the workers
(it keeps the first share of SSH hosts, and the local hosts): a fork and a process fewer,
on a machine whose cores the sshds' own handshake work also needs.

Workers are forked before the parent runs any asyncio loop (a child forked from inside a
running loop inherits that loop's state). They ignore ^C and die with the parent
(``PR_SET_PDEATHSIG``); the parent ends them when done. A worker that dies has its hosts
answered with an error that says so, and the other workers' hosts are not affected.

``FARMHAND_EXEC_WORKERS=N`` asks for N workers, this process included (1: no fork).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

from farmhand.drivers.base import ExecResult
from farmhand.errors import DriverError, RequestError
from farmhand.fleet.direct import SshExecutor
from farmhand.spec.models import FarmSpec

MIN_HOSTS_PER_WORKER = 8
"""Below this many SSH hosts per worker, a fork costs more than the handshakes it spreads."""
WORKERS_ENV = "FARMHAND_EXEC_WORKERS"
GOODBYE_SECONDS = 10.0
"""How long workers may take to close their connections once the parent is done."""
_HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


def worker_count(ssh_hosts: int, cpus: int | None, asked: str | None) -> int:
    """How many workers: ``asked`` (the environment's) if given, else one per core but at
    least ``MIN_HOSTS_PER_WORKER`` hosts each; never more than the hosts; 1 means none."""
    if asked is not None and asked.strip():
        try:
            wanted = int(asked)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise RequestError(f"{WORKERS_ENV}={asked!r}: give a whole number of workers, 1 or more", WORKERS_ENV)
        return max(1, min(wanted, ssh_hosts))
    return max(1, min(cpus or 1, ssh_hosts // MIN_HOSTS_PER_WORKER))


def deal(hosts: list[str], workers: int) -> list[list[str]]:
    """Hosts dealt round-robin, so the first ``fanout`` of them are spread over every worker."""
    return [hosts[index::workers] for index in range(workers)]


def _frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _frames(sock: socket.socket) -> AsyncIterator[Any]:
    """The values the other end sends, until it closes."""
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            yield pickle.loads(buffer[_HEADER.size:_HEADER.size + size])
            buffer = buffer[_HEADER.size + size:]


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class _Worker:
    """The parent's side of one worker: its pid, its socket, the answers awaited."""

    def __init__(self, pid: int, sock: socket.socket, hosts: list[str]) -> None:
        self.pid, self.sock, self.hosts = pid, sock, hosts
        self.pending: dict[str, asyncio.Future[ExecResult]] = {}
        self.failure: str | None = None
        self.reaped = False
        self._reader: asyncio.Task[None] | None = None
        self._send_lock: asyncio.Lock | None = None

    async def exec(self, host: str, command: str, timeout: float) -> ExecResult:
        if self.failure is not None:
            raise DriverError(host, self.failure)
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self.sock.setblocking(False)
            self._send_lock = asyncio.Lock()
            self._reader = loop.create_task(self._read())
        answer: asyncio.Future[ExecResult] = loop.create_future()
        self.pending[host] = answer
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                await loop.sock_sendall(self.sock, _frame((host, command, timeout)))
        except OSError:
            pass  # the worker is gone: the reader answers every pending host with why
        try:
            return await answer
        finally:
            self.pending.pop(host, None)

    async def _read(self) -> None:
        try:
            async for host, code, stdout, stderr, error in _frames(self.sock):
                answer = self.pending.get(host)
                if answer is None or answer.done():
                    continue
                if error is None:
                    answer.set_result(ExecResult(code, stdout, stderr))
                else:
                    answer.set_exception(DriverError(host, error))
        except OSError:
            pass
        status = await self.wait()
        self.failure = f"its exec worker (pid {self.pid}) {_exit_text(status)} before answering"
        for host, answer in list(self.pending.items()):
            if not answer.done():
                answer.set_exception(DriverError(host, self.failure))

    async def wait(self) -> int:
        """The worker's wait status, once it has exited (reaped here, so no zombie is left)."""
        loop = asyncio.get_running_loop()
        descriptor = os.pidfd_open(self.pid)
        try:
            gone: asyncio.Future[None] = loop.create_future()

            def exited() -> None:
                if not gone.done():
                    gone.set_result(None)

            loop.add_reader(descriptor, exited)
            try:
                await gone
            finally:
                loop.remove_reader(descriptor)
        finally:
            os.close(descriptor)
        _, status = os.waitpid(self.pid, 0)  # noqa: ASYNC222 - it has exited: this does not block
        self.reaped = True
        return status

    async def close(self) -> None:
        """Tell the worker we are done (it closes its connections and exits), then reap it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), GOODBYE_SECONDS)
            except TimeoutError:
                self.kill()
        elif not self.reaped:
            try:
                await asyncio.wait_for(self.wait(), GOODBYE_SECONDS)
            except TimeoutError:
                self.kill()
        self.sock.close()

    def kill(self) -> None:
        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.reaped = True


class WorkerExecutor:
    """One host run by a worker: the drivers' ``exec`` contract, answered over the socket."""

    def __init__(self, host: str, worker: _Worker) -> None:
        self.host, self.worker = host, worker

    async def exec(self, command: str, timeout: float) -> ExecResult:
        return await self.worker.exec(self.host, command, timeout)

    async def close(self) -> None:
        return None  # the worker closes its own connections (WorkerPool.close)


class WorkerPool:
    """The forked workers and a proxy executor for each of their hosts."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.executors = {host: WorkerExecutor(host, worker) for worker in workers for host in worker.hosts}

    async def close(self) -> None:
        await asyncio.gather(*(worker.close() for worker in self.workers), return_exceptions=True)

    def kill(self) -> None:
        """Synchronous last resort (after the loop, on ^C or an error): no worker outlives us."""
        for worker in self.workers:
            worker.kill()
            worker.sock.close()


def fork_workers(spec: FarmSpec, hosts: list[str], connect_timeout: float) -> WorkerPool | None:
    """Fork the workers for all but the first share of ``hosts``' SSH hosts (that one stays
    in this process), or None when one process is enough.

    Call before any asyncio loop runs in this process."""
    ssh = [name for name in hosts if name in spec.hosts and spec.hosts[name].driver == "ssh"]
    count = worker_count(len(ssh), os.cpu_count(), os.environ.get(WORKERS_ENV))
    if count < 2:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # the imports' objects: a worker's collections would touch (copy) every page of them
    parent = os.getpid()
    workers: list[_Worker] = []
    try:
        for share in deal(ssh, count)[1:]:  # the first share stays here: this process is a worker too
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                theirs.close()
                for earlier in workers:
                    earlier.sock.close()
                _worker_main(mine, spec, share, connect_timeout, parent)
            mine.close()
            workers.append(_Worker(pid, theirs, share))
    except BaseException:
        for worker in workers:
            worker.kill()
            worker.sock.close()
        raise
    return WorkerPool(workers)


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(sock: socket.socket, spec: FarmSpec, hosts: list[str], connect_timeout: float,
                 parent: int) -> None:
    """A worker's whole life; never returns (``os._exit``: no atexit work, no inherited
    buffers written twice)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _die_with_parent(parent)
        executors = {name: SshExecutor(name, spec.hosts[name], connect_timeout) for name in hosts}
        asyncio.run(_serve(sock, executors))
        code = 0
    except BaseException as error:  # noqa: BLE001 - a worker must end here whatever happened
        try:
            sys.stderr.write(f"farmhand exec worker {os.getpid()}: {type(error).__name__}: {error}\n")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


async def _serve(sock: socket.socket, executors: dict[str, SshExecutor]) -> None:
    """Run each request as it comes, answer each host as it finishes; at the parent's EOF,
    close every connection."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    send_lock = asyncio.Lock()
    running: set[asyncio.Task[None]] = set()

    async def answer(host: str, command: str, timeout: float) -> None:
        try:
            result = await executors[host].exec(command, timeout)
            reply: tuple[Any, ...] = (host, result.exit_code, result.stdout, result.stderr, None)
        except DriverError as error:
            reply = (host, 0, b"", b"", str(error).removeprefix(f"host {host}: "))
        except Exception as error:  # noqa: BLE001 - reported as this host's failure, not the worker's
            reply = (host, 0, b"", b"", f"{type(error).__name__}: {error}")
        try:
            async with send_lock:
                await loop.sock_sendall(sock, _frame(reply))
        except OSError:
            pass  # the parent is gone

    async for host, command, timeout in _frames(sock):
        task = loop.create_task(answer(host, command, timeout))
        running.add(task)
        task.add_done_callback(running.discard)
    for task in list(running):
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    await asyncio.gather(*(executor.close() for executor in executors.values()), return_exceptions=True)
    sock.close()
