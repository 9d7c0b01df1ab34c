"""`farmhand sync`: a folder to many hosts at once with rsync, into releases.

Per host, in parallel (at most ``fanout`` at once): make the release folder (a hard-linked
copy of the current one, ``releases.prepare_script``), rsync SRC into it over SSH, run the
``after`` command there, then switch ``current`` to it and prune. A host whose rsync or
``after`` fails is reported with its reason and not switched (its new folder is removed);
the others go on. ``{host}`` in DEST stands for each host's name (hosts that share a file
system, such as an NFS home, each get a folder of their own). rsync runs here with OpenSSH, configured only from the farm file: its key,
its pinned host key or known_hosts (strict checking), curve25519, no ~/.ssh/config.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.drivers.base import ExecResult
from farmhand.errors import DriverError
from farmhand.fleet import releases
from farmhand.fleet import sync_progress as progress
from farmhand.fleet.gather import UNREACHABLE, HostResult
from farmhand.fleet.run import Executor
from farmhand.spec.models import HostSpec

RSYNC_FAILED = 23


@dataclass(frozen=True)
class SyncOptions:
    delete: bool = False
    dry_run: bool = False
    excludes: tuple[str, ...] = ()
    after: str | None = None
    keep: int = 5
    after_timeout: float = 600.0
    connect_timeout: float = 10.0
    fanout: int = 64


@dataclass
class SshConfig:
    """Files OpenSSH needs for hosts whose key is pinned in the farm file (removed after)."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="farmhand-sync-")))

    def known_hosts_for(self, name: str, spec: HostSpec) -> str:
        if spec.known_hosts:
            return os.path.expanduser(spec.known_hosts)
        path = self.folder / f"{name}.known_hosts"
        where = spec.address if spec.port == 22 else f"[{spec.address}]:{spec.port}"
        path.write_text(f"{where} {spec.host_key}\n")
        return str(path)

    def remove(self) -> None:
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


def ssh_command(spec: HostSpec, known_hosts: str, connect_timeout: float) -> list[str]:
    """OpenSSH's argv for rsync's ``-e``: the farm file's settings only, strict host keys."""
    argv = ["ssh", "-F", "/dev/null", "-p", str(spec.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
            "-o", "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org"]
    if spec.key_file:
        argv += ["-i", os.path.expanduser(spec.key_file), "-o", "IdentitiesOnly=yes"]
    return argv


def rsync_argv(source: str, target: str, options: SyncOptions, ssh: list[str] | None) -> list[str]:
    """rsync's argv: ``source``'s contents into ``target`` (a path, or user@host:path)."""
    argv = ["rsync", "-a", "--no-inc-recursive"]
    argv += ["--itemize-changes"] if options.dry_run else ["--stats", "--info=progress2"]
    if options.delete:
        argv.append("--delete")
    if options.dry_run:
        argv.append("--dry-run")
    for pattern in options.excludes:
        argv += ["--exclude", pattern]
    if ssh is not None:
        argv += ["-e", shlex.join(ssh)]
    return [*argv, source.rstrip("/") + "/", target]


async def _rsync(argv: Sequence[str], on_progress: Callable[[progress.RsyncProgress], None] | None = None
                 ) -> ExecResult:
    """Run rsync; its ``--info=progress2`` updates go to ``on_progress`` as they come and are
    left out of the answer's stdout (which keeps everything else, ``--stats`` included)."""
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.ensure_future(process.stderr.read())
    kept: list[str] = []
    pending = ""
    while chunk := await process.stdout.read(65536):
        lines, pending = progress.split_updates(pending + chunk.decode(errors="replace"))
        for line in lines:
            update = progress.parse_progress(line)
            if update is None:
                kept.append(line)
            elif on_progress is not None:
                on_progress(update)
    if pending.strip():
        kept.append(pending)
    stderr = await errors
    await process.wait()
    return ExecResult(process.returncode or 0, "".join(f"{line}\n" for line in kept).encode(), stderr)


def _remote_path(name: str, spec: HostSpec, path: str) -> str:
    if spec.driver == "local":
        return path
    user = f"{spec.user}@" if spec.user else ""
    return f"{user}{spec.address}:{path}"


async def sync_host(name: str, spec: HostSpec, executor: Executor, source: str, dest: str, release: str,
                    options: SyncOptions, config: SshConfig, tally: progress.Tally | None = None) -> HostResult:
    """One host's sync; every failure becomes the host's result, never an exception. Its
    rsync's progress and end go into ``tally`` (one figure for the whole sync)."""
    started = time.monotonic()
    dest = dest.replace("{host}", name)

    def done(status: int, text: str, error: str | None = None) -> HostResult:
        return HostResult(name, status, text.encode(), error=error, seconds=time.monotonic() - started)

    ssh = None if spec.driver == "local" else ssh_command(spec, config.known_hosts_for(name, spec),
                                                         options.connect_timeout)
    try:
        if options.dry_run:
            target = _remote_path(name, spec, dest.rstrip("/") + "/current/")
            answer = await _rsync(rsync_argv(source, target, options, ssh))
            return done(answer.exit_code, (answer.stdout + answer.stderr).decode(errors="replace"))
        prepared = await executor.exec(releases.prepare_script(dest, release), options.connect_timeout + 60)
        if prepared.exit_code:
            return done(prepared.exit_code, f"cannot make the release: {_text(prepared)}")
        folder = f"{dest.rstrip('/')}/releases/{release}/"
        on_progress = None if tally is None else (lambda update: tally.update(name, update))
        answer = await _rsync(rsync_argv(source, _remote_path(name, spec, folder), options, ssh), on_progress)
        if tally is not None:
            tally.finish(name, progress.parse_stats(answer.stdout.decode(errors="replace")))
        if answer.exit_code:
            await executor.exec(releases.discard_script(dest, release), 60)
            return done(answer.exit_code, f"rsync failed, not switched: {_text(answer)}")
        if options.after:
            after = await executor.exec(releases.after_script(dest, release, options.after), options.after_timeout)
            if after.exit_code:
                await executor.exec(releases.discard_script(dest, release), 60)
                return done(after.exit_code, f"after failed (exit {after.exit_code}), not switched: {_text(after)}")
        switched = await executor.exec(releases.switch_script(dest, release, options.keep), 60)
        if switched.exit_code:
            return done(switched.exit_code, f"switch failed: {_text(switched)}")
        return done(0, f"current -> releases/{release}\n")
    except DriverError as error:
        return done(UNREACHABLE, "", error=str(error).removeprefix(f"host {name}: "))


async def sync_all(hosts: Mapping[str, HostSpec], executors: Mapping[str, Executor], source: str, dest: str,
                   options: SyncOptions, release: str | None = None, *,
                   tally: progress.Tally | None = None) -> list[HostResult]:
    """Every host's sync at once (``fanout`` at most); ``tally``, when given, follows every
    host's rsync for one progress figure (a host that ends before its rsync counts as done)."""
    if not Path(source).is_dir():
        raise DriverError("local", f"{source} is not a folder: sync sends a folder's contents")
    release = release or releases.release_name()
    slots = asyncio.Semaphore(options.fanout)
    config = SshConfig()

    async def one(name: str) -> HostResult:
        async with slots:
            result = await sync_host(name, hosts[name], executors[name], source, dest, release, options, config,
                                     tally)
        if tally is not None and name not in tally.finished:
            tally.finish(name, None)
        return result

    try:
        return list(await asyncio.gather(*(one(name) for name in hosts)))
    finally:
        config.remove()


async def rollback_all(executors: Mapping[str, Executor], dest: str, fanout: int = 64) -> list[HostResult]:
    slots = asyncio.Semaphore(fanout)

    async def one(name: str) -> HostResult:
        async with slots:
            try:
                answer = await executors[name].exec(releases.rollback_script(dest.replace("{host}", name)), 60)
            except DriverError as error:
                return HostResult(name, UNREACHABLE, error=str(error).removeprefix(f"host {name}: "))
        if answer.exit_code:
            return HostResult(name, answer.exit_code, f"not rolled back: {_text(answer)}".encode())
        return HostResult(name, 0, f"current -> releases/{answer.stdout.decode().strip()}\n".encode())

    return list(await asyncio.gather(*(one(name) for name in executors)))


def _text(result: ExecResult) -> str:
    text = (result.stderr or result.stdout).decode(errors="replace").strip()
    return (text or f"exit status {result.exit_code}").splitlines()[-1] if text else f"exit status {result.exit_code}"
