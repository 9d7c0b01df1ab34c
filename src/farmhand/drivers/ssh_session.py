"""One long-lived SSH connection to one host: connect, verify, reconnect, translate errors.

Why one connection: a handshake costs ~60 ms and a command on an open connection ~6.5 ms
(FIELD-NOTES.md), so every driver call reuses the same connection, opening a channel per
command. Why the limits: sshd drops handshakes past ``MaxStartups`` (10) and channels past
``MaxSessions`` (10) per connection, so at most :data:`HANDSHAKES_PER_HOST` handshakes are in
flight to one host from this process (however many drivers talk to it) and at most
:data:`CHANNELS_PER_CONNECTION` commands run at once on a connection.

A connection that fails is not retried in a tight loop: after a failure, calls fail at once
with the same error until the backoff delay has passed (doubling up to a maximum, reset by a
success). Every error is a ``DriverError`` that names the host and says whose fault it is:

    DriverError        the host answered but refused: authentication failed, the host key is
                       unknown or changed, no host key source is configured, a key file
                       cannot be read (fix the farm file or the host)
    HostUnreachable    no answer: refused, no route, timed out, connection lost

Host keys are always checked: against the pinned ``host_key`` or the ``known_hosts`` file,
never accepted silently. Only the farm file configures a connection (no ~/.ssh/config).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import random
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from farmhand.errors import DriverError, HostUnreachable
from farmhand.spec.models import HostSpec


@contextlib.contextmanager
def _libraries_from_the_loader_cache() -> Iterator[None]:
    """While asyncssh is imported, ``ctypes.util.find_library`` asks only the loader's cache.

    Why: asyncssh probes for liboqs (twice) and nettle at import; on a host without liboqs
    each miss falls through to running gcc and ld (~25 ms of CPU in all), a cost paid by every
    ``farmhand exec`` start. The cache (``ldconfig -p``) finds every library a package
    installed; a liboqs outside it would only add post-quantum key exchanges, which farmhand
    does not ask for first.
    """
    import ctypes.util

    quick = getattr(ctypes.util, "_findSoname_ldconfig", None)
    if quick is None or "asyncssh" in sys.modules:
        yield
        return
    original = ctypes.util.find_library
    ctypes.util.find_library = quick
    try:
        yield
    finally:
        ctypes.util.find_library = original


with _libraries_from_the_loader_cache():
    import asyncssh

HANDSHAKES_PER_HOST = 8
CHANNELS_PER_CONNECTION = 8
KEX_ALGS = [
    # curve25519 first: OpenSSH's post-quantum default cost ~10x the CPU per handshake here.
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group14-sha256",
]


@dataclass(frozen=True)
class SshTimeouts:
    """How long the driver waits for a host before calling it unreachable (seconds)."""

    connect: float = 10.0
    """TCP connect, key exchange and authentication together."""
    call: float = 15.0
    """One of the driver's own commands (list, start, metrics...); ``exec`` adds its own."""
    keepalive_interval: float = 5.0
    keepalive_count: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@dataclass(frozen=True)
class Completed:
    exit_status: int
    stdout: bytes
    stderr: bytes


Runner = Callable[[str], Awaitable[Completed]]
"""Runs one command on a fresh connection (what ``prepare`` gets)."""

_handshakes: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _handshake_slot(address: str, port: int) -> AsyncIterator[None]:
    """One of the few handshakes allowed in flight to ``address:port`` from this loop."""
    slots = _handshakes.setdefault(asyncio.get_running_loop(), {})
    semaphore = slots.setdefault((address, port), asyncio.Semaphore(HANDSHAKES_PER_HOST))
    async with semaphore:
        yield


class SshSession:
    """The connection to host ``host`` (its name in the farm file).

    ``prepare`` runs on every new connection before any other command (the driver reads the
    host's constants and checks its base directory there); if it fails, the connection is
    dropped and the failure counts like a failed connect.
    """

    def __init__(
        self,
        host: str,
        spec: HostSpec,
        timeouts: SshTimeouts,
        prepare: Callable[[Runner], Awaitable[None]],
    ) -> None:
        assert spec.address is not None
        self.host = host
        self.spec = spec
        self.address = spec.address
        self.port = spec.port
        self.user = spec.user or getpass.getuser()
        self.timeouts = timeouts
        self._prepare = prepare
        self._connection: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._channels = asyncio.Semaphore(CHANNELS_PER_CONNECTION)
        self._options: asyncssh.SSHClientConnectionOptions | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: tuple[type[DriverError], str] | None = None

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"{self._failures} failures"
        return f"<SshSession {self.host} {self.user}@{self.address}:{self.port} [{state}]>"

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def open(self) -> None:
        """Connect (and prepare) now if not connected; raises what connecting raises."""
        await self._connected()

    async def run(self, command: str, *, timeout: float, input: bytes | None = None) -> Completed:
        """Run ``command`` with the remote user's shell; stdin is ``input`` or closed."""
        connection = await self._connected()
        return await self._run_on(connection, command, timeout=timeout, input=input)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await connection.wait_closed()

    async def _run_on(
        self,
        connection: asyncssh.SSHClientConnection,
        command: str,
        *,
        timeout: float,
        input: bytes | None,
    ) -> Completed:
        try:
            async with self._channels:
                async with asyncio.timeout(timeout):
                    result = await connection.run(
                        command, input=input or None, stdin=asyncssh.DEVNULL, encoding=None
                    )
        except TimeoutError:
            self._drop(connection)
            raise HostUnreachable(self.host, f"no answer from {self.where} within {timeout:g}s") from None
        except (asyncssh.Error, OSError) as error:
            self._drop(connection)
            raise HostUnreachable(self.host, f"connection to {self.where} lost: {_reason(error)}") from error
        status = result.exit_status if result.exit_status is not None else -1
        return Completed(status, _as_bytes(result.stdout), _as_bytes(result.stderr))

    async def _connected(self) -> asyncssh.SSHClientConnection:
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return connection
        async with self._connecting:
            connection = self._connection
            if connection is not None and not connection.is_closed():
                return connection
            loop = asyncio.get_running_loop()
            if self._last_error is not None and loop.time() < self._retry_at:
                kind, message = self._last_error
                wait = self._retry_at - loop.time()
                raise kind(self.host, f"{message} (next try in {wait:.1f}s)")
            try:
                connection = await self._connect()
            except DriverError as error:
                self._failures += 1
                delay = min(
                    self.timeouts.backoff_max,
                    self.timeouts.backoff_initial * 2 ** (self._failures - 1),
                )
                self._retry_at = loop.time() + delay * random.uniform(0.8, 1.0)
                self._last_error = (type(error), str(error).removeprefix(f"host {self.host}: "))
                raise
            self._failures = 0
            self._last_error = None
            self._connection = connection
            return connection

    async def _connect(self) -> asyncssh.SSHClientConnection:
        options = self._connect_options()
        async with _handshake_slot(self.address, self.port):
            try:
                async with asyncio.timeout(self.timeouts.connect):
                    connection = await asyncssh.connect(
                        self.address, self.port, options=options, config=None
                    )
            except asyncssh.PermissionDenied:
                raise DriverError(
                    self.host, f"authentication failed for user {self.user} with {self._key_description()}"
                ) from None
            except asyncssh.HostKeyNotVerifiable:
                raise DriverError(self.host, self._host_key_problem()) from None
            except TimeoutError:
                raise HostUnreachable(
                    self.host, f"no answer from {self.where} within {self.timeouts.connect:g}s"
                ) from None
            except ConnectionRefusedError:
                raise HostUnreachable(self.host, f"connection refused by {self.where}") from None
            except OSError as error:
                raise HostUnreachable(self.host, f"cannot reach {self.where}: {_reason(error)}") from None
            except asyncssh.Error as error:
                raise HostUnreachable(
                    self.host, f"{self.where} closed the connection during the handshake: {_reason(error)}"
                ) from None
        try:
            await self._prepare(
                lambda command: self._run_on(connection, command, timeout=self.timeouts.call, input=None)
            )
        except BaseException:
            connection.abort()
            raise
        return connection

    def _drop(self, connection: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed; the next call reconnects (a half-dead connection
        on a cut link would otherwise hang every later call)."""
        if self._connection is connection:
            self._connection = None
        connection.abort()

    def _connect_options(self) -> asyncssh.SSHClientConnectionOptions:
        if self._options is not None:
            return self._options
        options: dict[str, Any] = {
            "config": None,  # the farm file is the only configuration, not ~/.ssh/config
            "username": self.user,
            "known_hosts": self._known_hosts(),
            "kex_algs": KEX_ALGS,
            "compression_algs": None,
            "preferred_auth": "publickey",
            "login_timeout": self.timeouts.connect,
            "keepalive_interval": self.timeouts.keepalive_interval,
            "keepalive_count_max": self.timeouts.keepalive_count,
        }
        if self.spec.key_file:
            path = os.path.expanduser(self.spec.key_file)
            try:
                options["client_keys"] = [asyncssh.read_private_key(path)]
            except (OSError, ValueError) as error:
                raise DriverError(self.host, f"cannot read key file {path}: {_reason(error)}") from None
            options["agent_path"] = None
        self._options = asyncssh.SSHClientConnectionOptions(**options)
        return self._options

    def _known_hosts(self) -> Any:
        """The pinned key wins over a known_hosts file; with neither, refuse to connect."""
        if self.spec.host_key:
            try:
                key = asyncssh.import_public_key(self.spec.host_key)
            except (ValueError, TypeError) as error:
                raise DriverError(self.host, f"host_key is not a valid public key: {_reason(error)}") from None
            return ([key], [], [])
        if self.spec.known_hosts:
            path = os.path.expanduser(self.spec.known_hosts)
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise DriverError(self.host, f"cannot read known_hosts {path}: {_reason(error)}") from None
            return path
        raise DriverError(
            self.host,
            "no host key to verify against: set known_hosts or host_key "
            "(farmhand never accepts an unknown host key)",
        )

    def _host_key_problem(self) -> str:
        if self.spec.host_key:
            return f"host key of {self.where} does not match the pinned host_key"
        path = os.path.expanduser(self.spec.known_hosts or "")
        try:
            host_keys, ca_keys, *_ = asyncssh.match_known_hosts(path, self.address, self.address, self.port)
        except (OSError, ValueError):
            host_keys, ca_keys = [], []
        if host_keys or ca_keys:
            return f"host key of {self.where} does not match its entry in known_hosts {path} (changed key?)"
        return f"host key of {self.where} is not in known_hosts {path}"

    def _key_description(self) -> str:
        if self.spec.key_file:
            return f"key {os.path.expanduser(self.spec.key_file)}"
        return "the ssh agent and default keys"


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncssh.DisconnectError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)  # asyncio's "Connect call failed" hides the reason
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode()
