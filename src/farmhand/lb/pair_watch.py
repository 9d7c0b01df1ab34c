"""The watcher beside keepalived on a load-balancer pair member: tells keepalived the instant
the local balancer dies.

``python -m farmhand.lb.pair_watch SOCKET TRACK_FILE [builtin|haproxy]`` (started detached by
``farmhand.lb.placed``) keeps one connection open to the balancer's control socket (HAProxy:
its runtime API in interactive mode) and pings it every ``PING_EVERY`` seconds; it writes
``0`` to ``TRACK_FILE`` while the balancer answers and ``1`` as soon as the connection closes
(a killed process's sockets close at once) and a new one is refused, or a ping goes
unanswered. A closed connection that a new one replaces at once (HAProxy's seamless reload
hands the socket to its new process) is no death. keepalived reads the file by inotify (``track_file`` with weight 0), so
the instance goes to FAULT and the address moves within an advert or two: keepalived's own
scripts run at most once a second, and its process tracking does not work inside a PID
namespace. Only the standard library, so it starts in tens of milliseconds; one per member,
held by a lock on ``watch.pid`` beside the track file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

PING_EVERY = 0.5
ANSWER_WITHIN = 2.0
RETRY_EVERY = 0.05


class Track:
    """The track file, written only when its value changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value: str | None = None

    def set(self, value: str) -> None:
        if value == self.value:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        tmp.replace(self.path)
        self.value = value
        print(f"{time.time():.3f} balancer {'answers' if value == '0' else 'is gone'}", flush=True)


class Builtin:
    """The builtin engine's control channel: one JSON line each way."""

    def start(self, sock: socket.socket) -> None:
        self.reader = sock.makefile("rb")

    def ping(self, sock: socket.socket) -> bool:
        sock.sendall(json.dumps({"op": "ping"}).encode() + b"\n")
        line = self.reader.readline()
        return bool(line) and bool(json.loads(line).get("ok"))


class Haproxy:
    """HAProxy's runtime API in interactive mode ("prompt"): every answer ends with "> "."""

    def start(self, sock: socket.socket) -> None:
        sock.sendall(b"prompt\n")
        self._until_prompt(sock)

    def ping(self, sock: socket.socket) -> bool:
        sock.sendall(b"show info\n")
        return b"Name: HAProxy" in self._until_prompt(sock)

    @staticmethod
    def _until_prompt(sock: socket.socket) -> bytes:
        data = b""
        while not data.endswith(b"> "):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data


def watch_once(control: Path, track: Track, protocol: Builtin | Haproxy) -> None:
    """Hold one connection to the balancer until it closes or stops answering."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ANSWER_WITHIN)
        sock.connect(str(control))
        protocol.start(sock)
        while True:
            if not protocol.ping(sock):
                return
            track.set("0")
            # wait for the next ping, but see a closed connection at once
            sock.settimeout(PING_EVERY)
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return
            except TimeoutError:
                pass
            sock.settimeout(ANSWER_WITHIN)


def main(argv: list[str]) -> int:
    control, track_path = Path(argv[0]), Path(argv[1])
    protocol: Builtin | Haproxy = Haproxy() if argv[2:] == ["haproxy"] else Builtin()
    handle = open(track_path.parent / "watch.pid", "a+")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another watcher runs for this balancer
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    track = Track(track_path)
    while True:
        with contextlib.suppress(OSError, ValueError):
            watch_once(control, track, protocol)
        with contextlib.suppress(OSError, ValueError):
            watch_once(control, track, protocol)  # at once: a reload's new process may answer
        track.set("1")
        time.sleep(RETRY_EVERY)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
