"""The HTTPS listener's own TLS transport: OpenSSL reads and writes the socket itself.

Why not the event loop's TLS (``loop.create_server(ssl=...)``): uvloop's ``SSLProtocol``
receives every record into Python bytes, feeds them to a memory BIO, runs its state machine
in Python and copies the ciphertext out again through another BIO, on every read and write.
Here the accepted socket is wrapped by ``_ssl`` itself (the C object under
``ssl.SSLSocket``), so ``SSL_read``/``SSL_write`` call ``recv``/``send`` on the descriptor,
and the loop only says when the descriptor is readable or writable (``add_reader``/
``add_writer``). The protocols (``http_proxy.TlsClientSide``) see an ordinary
``asyncio.Transport``: ``connection_made`` once the handshake is done, ``data_received``,
``pause_writing``/``resume_writing`` around the write buffer's high-water mark,
``eof_received``, ``connection_lost``.

How OpenSSL's non-blocking answers are followed (``SSL_get_error``):

- a read that needs the socket writable (``SSLWantWriteError``: a key update or
  renegotiation answer could not be sent) waits for writability, then reads again; a write
  that needs it readable (``SSLWantReadError``) waits for readability, then writes again;
- a write that could not finish is retried with the same bytes (OpenSSL remembers how far it
  got; Python's ``_ssl`` sets ``SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER``), later writes queue
  behind it;
- ``close`` flushes the queue, sends close_notify (``SSL_shutdown``; the peer's is not
  awaited, as HTTP servers do), then closes the socket; ``abort`` closes it at once.

A handshake that does not finish within the listener's handshake timeout is cut, and so is a
close whose last bytes the peer does not take within ``CLOSE_TIMEOUT``. Certificates: every
new connection is wrapped with the listener's context as it is now, so a certificate loaded
into it (``certificates.Certificates.load``) serves the next handshake while open connections
keep theirs; the context's ``sni_callback`` is called with this transport as its first
argument, whose ``context`` attribute sets the connection's context like ``SSLSocket``'s.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

READ_SIZE = 16 << 10
"""Bytes asked of one ``SSL_read``: a record carries at most 16 KiB of plaintext and one
read returns at most one record's, so a bigger buffer would only cost a bigger allocation
(the bytes object made is shrunk to what was read)."""
HIGH_WATER = 64 << 10
"""Queued bytes past which the protocol is asked to pause writing (asyncio's default)."""
LOW_WATER = HIGH_WATER // 4
CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection may take to flush its last bytes and close_notify."""
ACCEPT_BATCH = 64
"""Connections accepted per readable event of the listener (the rest on the next one)."""
ACCEPT_PAUSE = 1.0
"""Seconds the listener rests after accept failed for want of descriptors or memory."""

_WantRead = ssl.SSLWantReadError
_WantWrite = ssl.SSLWantWriteError
_Eof = ssl.SSLZeroReturnError
_Broken = (ssl.SSLError, OSError)

HANDSHAKE, OPEN, CLOSING, SHUTDOWN, CLOSED = range(5)
"""A transport's states, in order: ``state >= CLOSING`` means it no longer takes writes."""
_STATE_NAMES = ("handshake", "open", "closing", "shutdown", "closed")


def supported() -> bool:
    """Whether this Python's ``_ssl`` lets a socket be wrapped without ``ssl.SSLSocket``
    (CPython 3.7 to 3.13 do); without it the worker uses the event loop's TLS instead."""
    return hasattr(ssl.SSLContext, "_wrap_socket")


class TlsServer:
    """Accepts on one listening socket and hands each connection to a ``TlsTransport``.

    The socket is the supervisor's (one SO_REUSEPORT socket per worker, inherited); it is
    not closed here, only no longer watched, so a restarted worker finds it as it was."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: socket.socket, context: ssl.SSLContext,
                 protocol_factory: Callable[[], asyncio.Protocol], handshake_timeout: float) -> None:
        self.loop = loop
        self.listener = listener
        self.context = context
        self.protocol_factory = protocol_factory
        self.handshake_timeout = handshake_timeout
        self.serving = True
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        listener = self.listener
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                # Out of descriptors or memory: the listener would stay readable and spin;
                # wait a while as asyncio's servers do, queued clients wait in the backlog.
                self.loop.remove_reader(listener.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume)
                return
            try:
                TlsTransport(self, sock, peer)
            except _Broken:
                sock.close()

    def _resume(self) -> None:
        if self.serving:
            self.loop.add_reader(self.listener.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting (connections already open carry on)."""
        if self.serving:
            self.serving = False
            self.loop.remove_reader(self.listener.fileno())


class TlsTransport(asyncio.Transport):
    """One TLS connection of the listener, as an ``asyncio.Transport`` (see the module)."""

    __slots__ = (
        "loop", "sock", "fd", "peer", "ssl", "server", "protocol", "queue", "queued", "state",
        "reading", "reader_on", "writer_on", "read_needs_write", "write_needs_read", "paused",
        "high", "low", "timer", "__weakref__",
    )

    def __init__(self, server: TlsServer, sock: socket.socket, peer: Any) -> None:
        super().__init__()
        loop = server.loop
        self.loop = loop
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.protocol: Any = None
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.state = HANDSHAKE
        self.reading = True
        self.reader_on = False
        self.writer_on = False
        self.read_needs_write = False
        self.write_needs_read = False
        self.paused = False
        self.high = HIGH_WATER
        self.low = LOW_WATER
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # ``_wrap_socket`` is what ``SSLContext.wrap_socket`` calls under ``SSLSocket``; the
        # owner (this transport) is what the SNI callback receives.
        self.ssl = server.context._wrap_socket(  # type: ignore[attr-defined]
            sock, server_side=True, server_hostname=None, owner=self, session=None)
        self.timer: asyncio.TimerHandle | None = loop.call_later(server.handshake_timeout, self._expired)
        # The ClientHello rarely arrives with the accept: wait for it rather than have OpenSSL
        # try a read first (a failed recv and an exception object per connection).
        self._watch_handshake(True)

    # -- what the SNI callback and ``get_extra_info`` read
    @property
    def context(self) -> ssl.SSLContext:
        return self.ssl.context  # type: ignore[no-any-return]

    @context.setter
    def context(self, context: ssl.SSLContext) -> None:
        self.ssl.context = context

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return self.sock.getsockname() if self.state != CLOSED else default
        if name == "socket":
            return self.sock
        if name == "sslcontext":
            return self.ssl.context
        if name == "ssl_object":
            return self.ssl
        if name == "cipher":
            return self.ssl.cipher()
        if name == "peercert":
            return self.ssl.getpeercert()
        if name == "compression":
            return self.ssl.compression()
        return default

    # -- readiness bookkeeping: watch the descriptor only for what is awaited
    def _watch(self) -> None:
        state = self.state
        want_read = self.write_needs_read or (state == OPEN and self.reading and not self.read_needs_write)
        want_write = self.read_needs_write or (bool(self.queue) and not self.write_needs_read) or state == SHUTDOWN
        if want_read != self.reader_on:
            self.reader_on = want_read
            if want_read:
                self.loop.add_reader(self.fd, self._readable)
            else:
                self.loop.remove_reader(self.fd)
        if want_write != self.writer_on:
            self.writer_on = want_write
            if want_write:
                self.loop.add_writer(self.fd, self._writable)
            else:
                self.loop.remove_writer(self.fd)

    def _handshake(self) -> None:
        """Advance the handshake; once done, make the protocol (asyncio's order)."""
        want_read = want_write = False
        try:
            self.ssl.do_handshake()
        except _WantRead:
            want_read = True
        except _WantWrite:
            want_write = True
        except _Broken:
            self._drop()  # a failed or abandoned handshake: no protocol was ever made
            return
        if want_read or want_write:
            self._watch_handshake(want_read)
            return
        self._cancel_timer()
        self.state = OPEN
        try:
            self.protocol = protocol = self.server.protocol_factory()
            protocol.connection_made(self)
        except BaseException as error:
            self._finish(error)
            raise
        if self.state == OPEN:
            self._watch()
            if self.reading and self.ssl.pending():  # bytes OpenSSL read along with the handshake
                self._read()

    def _watch_handshake(self, want_read: bool) -> None:
        """Wait for exactly what OpenSSL asked (both at once would spin on a writable socket)."""
        loop = self.loop
        if want_read != self.reader_on:
            self.reader_on = want_read
            if want_read:
                loop.add_reader(self.fd, self._readable)
            else:
                loop.remove_reader(self.fd)
        if want_read == self.writer_on:
            self.writer_on = not want_read
            if want_read:
                loop.remove_writer(self.fd)
            else:
                loop.add_writer(self.fd, self._writable)

    def _expired(self) -> None:
        self.timer = None
        if self.state == HANDSHAKE:
            self._drop()
        elif self.state in (CLOSING, SHUTDOWN):
            self._finish(None)

    def _cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    # -- readiness callbacks
    def _readable(self) -> None:
        state = self.state
        if state == HANDSHAKE:
            self._handshake()
            return
        if self.write_needs_read:
            self.write_needs_read = False
            self._flush()
        if self.state == OPEN and self.reading and not self.read_needs_write:
            self._read()
        elif self.state == OPEN:
            self._watch()

    def _writable(self) -> None:
        state = self.state
        if state == HANDSHAKE:
            self._handshake()
            return
        if state == SHUTDOWN:
            self._shutdown()
            return
        if self.read_needs_write:
            self.read_needs_write = False
            if self.state == OPEN and self.reading:
                self._read()
        if self.queue and not self.write_needs_read:
            self._flush()
        elif self.state != CLOSED:
            self._watch()

    # -- reading
    def _read(self) -> None:
        sslobj = self.ssl
        while True:
            try:
                data = sslobj.read(READ_SIZE)
            except _WantRead:
                return
            except _WantWrite:
                self.read_needs_write = True
                self._watch()
                return
            except _Eof:  # the peer's close_notify
                self._eof()
                return
            except _Broken as error:  # SSLEOFError too: a FIN or a reset with no close_notify
                # (``_ssl`` reports both alike), so the stream may be cut short: no EOF to the
                # protocol, and no close_notify sent into a connection the peer has left.
                self._fatal(error)
                return
            if not data:
                self._eof()
                return
            try:
                self.protocol.data_received(data)
            except BaseException as error:  # the protocol broke: cut, and let the loop log it
                self._finish(error)
                raise
            # More plaintext already inside OpenSSL (a record longer than what was read)
            # never makes the descriptor readable again: take it now.
            if self.state != OPEN or not self.reading or not sslobj.pending():
                return

    def _eof(self) -> None:
        """The peer sent close_notify: tell the protocol, then close; a TLS connection
        cannot stay half open (asyncio's rule too)."""
        self.reading = False
        try:
            self.protocol.eof_received()
        finally:
            self.close()

    def pause_reading(self) -> None:
        if self.reading and self.state == OPEN:
            self.reading = False
            self._watch()

    def resume_reading(self) -> None:
        if not self.reading and self.state == OPEN:
            self.reading = True
            self._watch()
            if self.ssl.pending():
                self.loop.call_soon(self._readable)

    def is_reading(self) -> bool:
        return self.reading and self.state == OPEN

    # -- writing
    def write(self, data: Any) -> None:
        if self.state != OPEN or not data:
            return
        if self.queue:
            self._enqueue(data)
            return
        try:
            self.ssl.write(data)
            return
        except _WantWrite:
            pass
        except _WantRead:
            self.write_needs_read = True
        except _Broken as error:
            self._fatal(error)
            return
        self._enqueue(data)  # OpenSSL holds how far it got: this chunk is retried as it is
        self._watch()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _enqueue(self, data: Any) -> None:
        if type(data) is not bytes:
            data = bytes(data)  # a caller's bytearray may change before it is sent
        self.queue.append(data)
        self.queued += len(data)
        if not self.paused and self.queued > self.high and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()

    def _flush(self) -> None:
        """Write what is queued until the socket is full; the first chunk may be one OpenSSL
        began (retried as it is), the rest go as one write (fewer, fuller records)."""
        queue = self.queue
        sslobj = self.ssl
        while queue:
            chunk = queue[0]
            try:
                sslobj.write(chunk)
            except _WantWrite:
                break
            except _WantRead:
                self.write_needs_read = True
                break
            except _Broken as error:
                self._fatal(error)
                return
            queue.popleft()
            self.queued -= len(chunk)
            if len(queue) > 1:
                joined = b"".join(queue)
                queue.clear()
                queue.append(joined)
        if self.paused and self.queued <= self.low and self.protocol is not None:
            self.paused = False
            self.protocol.resume_writing()
        if not queue and self.state == CLOSING:
            self._shutdown()
            return
        if self.state != CLOSED:
            self._watch()

    def get_write_buffer_size(self) -> int:
        return self.queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.high, self.low = high, low

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS connection cannot be half-closed")

    # -- closing
    def is_closing(self) -> bool:
        return self.state >= CLOSING

    def close(self) -> None:
        """Flush what is queued, send close_notify, close the socket; ``connection_lost``
        follows (at once if the peer takes the bytes, at most ``CLOSE_TIMEOUT`` later)."""
        if self.state >= CLOSING:
            return
        if self.state == HANDSHAKE:
            self._drop()
            return
        self.state = CLOSING
        self.reading = False
        if self.queue:
            self._arm_close_timer()
            self._watch()
        else:
            self._shutdown()

    def _arm_close_timer(self) -> None:
        if self.timer is None:
            self.timer = self.loop.call_later(CLOSE_TIMEOUT, self._expired)

    def _shutdown(self) -> None:
        self.state = SHUTDOWN
        try:
            self.ssl.shutdown()
        except _WantWrite:  # close_notify not out yet: wait for room, for a bounded time
            self._arm_close_timer()
            self._watch()
            return
        except _WantRead:  # ours is sent; the peer's is not awaited
            pass
        except _Broken:
            pass
        self._finish(None)

    def abort(self) -> None:
        if self.state == CLOSED:
            return
        if self.protocol is None:
            self._drop()
            return
        self._finish(None)

    def _fatal(self, error: BaseException) -> None:
        """The connection broke (a reset, a bad record): no close_notify, just close."""
        self._finish(error)

    def _release(self) -> None:
        self.state = CLOSED
        self._cancel_timer()
        if self.reader_on:
            self.reader_on = False
            self.loop.remove_reader(self.fd)
        if self.writer_on:
            self.writer_on = False
            self.loop.remove_writer(self.fd)
        self.queue.clear()
        self.queued = 0
        self.sock.close()

    def _drop(self) -> None:
        """Close before any protocol was made (handshake failed, abandoned or too slow)."""
        if self.state != CLOSED:
            self._release()

    def _finish(self, error: BaseException | None) -> None:
        if self.state == CLOSED:
            return
        self._release()
        if self.protocol is not None:
            self.loop.call_soon(self._lost, error)

    def _lost(self, error: BaseException | None) -> None:
        """Tell the protocol, then let go of it: the worker's hot path makes no reference
        cycles that only the (rarely run) cyclic collector would free."""
        protocol = self.protocol
        self.protocol = None
        if protocol is not None:
            protocol.connection_lost(error)

    # -- the rest of asyncio.Transport
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<TlsTransport fd={self.fd} {_STATE_NAMES[self.state]} queued={self.queued}>"
