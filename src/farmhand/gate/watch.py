"""Watch a client's socket during its delay without reading a byte of it.

The next program (rblsmtpd, qmail-smtpd) must see every byte the client sent, so
``smtp-delay`` never reads fd 0 while it waits: it polls for readability, and then asks the
kernel how many bytes wait (``FIONREAD``). Readable with bytes waiting: the client talked
first. Readable with none: end of file, the client hung up. This works for TCP sockets and
for pipes alike. The refusal path (``reply_and_drain``) is the one place that reads: after
answering, so that closing does not reset the connection under the reply.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import termios
import time

from farmhand.gate.policy import Watch

_EVENTS = select.POLLIN | select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)
DRAIN_LIMIT = 1 << 20
"""Bytes a refused client may send while we wait for it to read the reply and leave."""


def waiting_bytes(fd: int) -> int:
    """Bytes the kernel holds unread for ``fd``; -1 when the fd is unusable (hung up)."""
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buffer, True)
    except OSError:
        return -1
    return buffer[0]


def _inspect(fd: int) -> Watch:
    return "talker" if waiting_bytes(fd) > 0 else "hangup"


def watch(fd: int, seconds: float) -> Watch:
    """Wait up to ``seconds`` for ``fd`` to become readable; what the client did."""
    poller = select.poll()
    poller.register(fd, _EVENTS)
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        events = poller.poll(max(0, int(remaining * 1000) + 1) if remaining > 0 else 0)
        if events:
            if any(mask & select.POLLNVAL for _, mask in events):
                return "hangup"
            return _inspect(fd)
        if remaining <= 0:
            return "quiet"


def check_now(fd: int) -> Watch:
    """One last look just before handing over: the client may have talked at the last moment."""
    return watch(fd, 0)


def reply_and_drain(fd_in: int, fd_out: int, reply: bytes, drain_seconds: float) -> None:
    """Send ``reply``, shut our sending side, then read and discard what the client still
    sends until it closes (or ``drain_seconds``), so the reply is not lost to a reset."""
    try:
        os.write(fd_out, reply)
    except OSError:
        return
    _shutdown_write(fd_out)
    deadline = time.monotonic() + drain_seconds
    drained = 0
    poller = select.poll()
    poller.register(fd_in, _EVENTS)
    while drained < DRAIN_LIMIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(int(remaining * 1000) + 1):
            return
        try:
            chunk = os.read(fd_in, 65536)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not chunk:
            return
        drained += len(chunk)


def _shutdown_write(fd: int) -> None:
    """Half-close a socket (the client reads our reply, then end of file); a pipe has no
    half-close, so close it (a pipe's reader sees end of file just the same)."""
    copy = os.dup(fd)
    try:
        sock = socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        try:
            os.close(fd)
        except OSError:
            pass
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()
