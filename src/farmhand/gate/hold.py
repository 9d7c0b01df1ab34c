"""One client's life in the gate: held in its delay, then refused or relayed to a backend.

Plain asyncio protocols, not streams or a task per client: a held client costs a protocol
object, its transport and one timer, which is what lets one process hold ten thousand of
them. States, in order:

    holding     waiting for the class (DNS) and then the delay; any byte = early talker
    connecting  the delay passed; reading paused while a backend is dialled
    relaying    bytes flow both ways; each side's end of file is passed on
    refusing    the reply (451/553, or 421) was sent and our side shut; input is read and
                dropped until the client leaves or ``reject_drain`` runs out, so that our
                close does not reset the connection before the client read the reply
    closed

The gate (``server.Gate``) makes the decisions; these classes only move bytes and report.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import TYPE_CHECKING, Literal, cast

from farmhand.gate.policy import Verdict

if TYPE_CHECKING:
    from farmhand.gate.server import Gate
    from farmhand.gate.stats import StatClass

State = Literal["holding", "connecting", "relaying", "refusing", "closed"]
PENDING_LIMIT = 1 << 16


class ClientSide(asyncio.Protocol):
    """The client's connection to the gate."""

    __slots__ = ("gate", "transport", "ip", "started", "klass", "verdict", "state", "timer",
                 "backend", "backend_name", "pending", "client_eof", "backend_eof")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.started = 0.0
        self.klass: StatClass | None = None
        self.verdict: Verdict | None = None
        self.state: State = "holding"
        self.timer: asyncio.TimerHandle | None = None
        self.backend: asyncio.Transport | None = None
        self.backend_name: str | None = None
        self.pending = b""
        self.client_eof = False
        self.backend_eof = False

    def __repr__(self) -> str:
        return f"<ClientSide {self.ip} [{self.state} | {self.klass or 'unclassified'}]>"

    # -- events from the client's socket ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.started = asyncio.get_running_loop().time()
        peer = transport.get_extra_info("peername")
        self.ip = peer_ip(peer[0] if peer else "")
        self.gate.admit(self)

    def data_received(self, data: bytes) -> None:
        if self.state == "relaying":
            assert self.backend is not None
            self.backend.write(data)
        elif self.state == "holding":
            self.finish("talker")
            self.refuse(self.gate.settings.policy.reply())
        elif self.state == "connecting" and len(self.pending) < PENDING_LIMIT:
            self.pending += data

    def eof_received(self) -> bool:
        if self.state == "relaying" and self.backend is not None:
            self.client_eof = True
            if self.backend_eof or not self.backend.can_write_eof():
                self.backend.close()
                return False
            self.backend.write_eof()
            return True
        if self.state == "holding":
            self.finish("hangup")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == "holding":
            self.finish("hangup")
        self._cancel_timer()
        if self.backend is not None:
            self.backend.close()
        self._end_relay()
        self.state = "closed"
        self.gate.forget(self)

    def pause_writing(self) -> None:
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.resume_reading()

    # -- what the gate tells it to do ---------------------------------------------------

    def hold(self, seconds: float) -> None:
        """Release to a backend after ``seconds`` unless the client talks or leaves first."""
        if self.state == "holding":
            self.timer = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        """The delay is over and the client stayed quiet: dial a backend."""
        self.timer = None
        if self.state != "holding" or self.transport is None:
            return
        self.finish("pass" if self.klass not in ("allowlisted", "cached") else "skip")
        self.state = "connecting"
        self.transport.pause_reading()
        self.gate.dial(self)

    def finish(self, verdict: Verdict) -> None:
        """Record the verdict (counted now if the class is known, else when it is)."""
        if self.verdict is not None:
            return
        self.verdict = verdict
        self._cancel_timer()
        if self.klass is not None:
            self.gate.stats.record(self.klass, verdict)
        if verdict == "pass":
            self.gate.passed(self.ip)

    def classified(self, klass: StatClass) -> None:
        self.klass = klass
        self.gate.stats.seen(klass)
        if self.verdict is not None:
            self.gate.stats.record(klass, self.verdict)

    def attach(self, backend: asyncio.Transport, name: str) -> None:
        """The backend answered: from now on bytes flow both ways."""
        if self.state != "connecting" or self.transport is None:
            backend.close()
            return
        self.backend, self.backend_name = backend, name
        self.state = "relaying"
        self.gate.pool.opened(name)
        if self.pending:
            backend.write(self.pending)
            self.pending = b""
        self.transport.resume_reading()

    def refuse(self, reply: bytes) -> None:
        """Answer, shut our side, and drop input until the client leaves (or time is up)."""
        transport = self.transport
        if transport is None or self.state in ("refusing", "closed"):
            return
        self.state = "refusing"
        self._cancel_timer()
        transport.write(reply)
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()
        self.timer = asyncio.get_running_loop().call_later(self.gate.settings.reject_drain, transport.close)

    def backend_lost(self) -> None:
        self._end_relay()
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- internals ----------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _end_relay(self) -> None:
        if self.backend_name is not None:
            self.gate.pool.closed(self.backend_name)
            self.backend_name = None


class BackendSide(asyncio.Protocol):
    """The gate's connection to a backend on behalf of one client."""

    __slots__ = ("client", "transport")

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.client.transport is not None:
            self.client.transport.write(data)

    def eof_received(self) -> bool:
        """Pass the backend's end of file on; once both sides have ended, close both."""
        client = self.client.transport
        self.client.backend_eof = True
        if client is None or self.client.client_eof or not client.can_write_eof() or client.is_closing():
            if client is not None:
                client.close()
            return False
        client.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.backend is self.transport:
            self.client.backend_lost()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.client.transport.resume_reading()


def peer_ip(text: str) -> str:
    """The client's address as text, IPv4-mapped IPv6 shown as IPv4."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)
