"""The local control channel between the controller and data-plane processes.

Load balancers and gates run in their own processes so they outlive the controller
(DESIGN.md rule 2); the controller reaches them over a Unix socket that speaks JSON lines:
one request object per line (``{"op": "...", ...}``), one answer object per line
(``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). A restarted controller simply
connects again: the socket path is the only thing it needs to know.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from farmhand.errors import LbError

SOCKET_PATH_ROOM = 90
"""Unix socket paths stop at 107 bytes (HAProxy's stats socket at 97): leave some room."""


def runtime_dir(state_dir: str | Path, name: str, longest_file: str = "control.sock") -> Path:
    """The folder for a data plane's socket and files: ``state_dir/name`` when a socket path
    in it fits, else a short private folder under the temp dir, linked from ``state_dir/name``
    so people still find its logs there. Deep farm folders then just work."""
    natural = Path(state_dir).resolve() / name
    if natural.is_symlink():
        return natural.resolve()
    if len(str(natural / longest_file)) <= SOCKET_PATH_ROOM:
        natural.mkdir(parents=True, exist_ok=True)
        return natural
    digest = hashlib.sha256(str(natural).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"farmhand-{os.getuid()}" / digest
    short.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    short.mkdir(mode=0o700, exist_ok=True)
    if not natural.exists():
        natural.parent.mkdir(parents=True, exist_ok=True)
        natural.symlink_to(short, target_is_directory=True)
    return short


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 16 << 20


async def serve(path: str | Path, handler: Handler) -> asyncio.AbstractServer:
    """Answer requests on ``path`` with ``handler`` (which returns the answer's fields)."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    answer = {"ok": True, **(await handler(request))}
                except Exception as error:  # an answer, not a crash: the channel stays up
                    answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_LINE)
    os.chmod(path, 0o600)
    return server


async def call(path: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the answer; ``LbError`` when nobody answers or it fails."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
            try:
                writer.write(json.dumps(request).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as error:
        raise LbError(f"control channel {path}: no answer to {request.get('op')!r} ({error})") from error
    if not line:
        raise LbError(f"control channel {path}: closed without answering {request.get('op')!r}")
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise LbError(f"control channel {path}: {request.get('op')!r} failed: {answer.get('error')}")
    return answer


class LockBusy(Exception):
    """Another process held a start lock for longer than we were willing to wait."""


@contextlib.asynccontextmanager
async def start_lock(path: str | Path, timeout: float) -> AsyncIterator[None]:
    """Hold an exclusive ``flock`` on ``path`` so that two controllers racing to start a data
    plane start one. Polled, so the event loop never blocks; ``LockBusy`` when another
    holder keeps it longer than ``timeout``."""
    handle = open(path, "a")  # noqa: SIM115 - held for the whole block
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise LockBusy(f"another process holds {path}") from None
                await asyncio.sleep(0.05)
        yield
    finally:
        handle.close()
