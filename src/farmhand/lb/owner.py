"""One balancer per listening address, and who holds an address when it is taken.

Why: the builtin engine's workers share their port with SO_REUSEPORT, and the kernel lets
*any* process of the same user join such a group. Two farms on one address would then split
its traffic silently (issue 10 #3). So before its workers bind, the supervisor *probes* the
address with a socket that does not ask for SO_REUSEPORT: the kernel refuses that bind while
anyone listens there (another farm's workers, an HAProxy, any program), including on an
overlapping wildcard address. The probe and the real binds run under one short per-user lock
(``bind_lock``), so two balancers starting at the same instant cannot both pass the probe.
HAProxy gets ``noreuseport``, so its listener is exclusive by itself.

When the address is taken, ``in_use`` names the holder: the listening sockets are matched
to processes (psutil), and a farmhand engine is recognised by its command line (the builtin
engine's ``engine.json``, HAProxy's ``haproxy.cfg``), which gives its role and its folder.
That is the error path only: nothing here runs while serving.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


def bind_lock_path() -> Path:
    """A per-user file every balancer of this user locks while it probes and binds."""
    folder = Path(tempfile.gettempdir()) / f"farmhand-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / "lb-bind.lock"


@contextlib.contextmanager
def bind_lock() -> Iterator[None]:
    """Hold the bind lock (probing and binding take milliseconds, so a blocking lock)."""
    with open(bind_lock_path(), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def probe(host: str, port: int) -> OSError | None:
    """Whether ``host:port`` is free for us alone: the bind error if anyone listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError as error:
            return error
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        return []


def _after(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def describe(pid: int) -> str:
    """How an error names process ``pid``: a farmhand balancer by role and folder."""
    args = _cmdline(pid)
    if "farmhand.lb.engine" in args or "farmhand.lb.worker" in args:
        settings = Path(args[-1])
        role = "?"
        with contextlib.suppress(OSError, ValueError, KeyError):
            role = str(json.loads(settings.read_text())["role"])
        engine_pid = pid
        with contextlib.suppress(OSError, ValueError):
            engine_pid = int((settings.parent / "engine.pid").read_text().split()[0])
        return f"the builtin load balancer of role {role!r} (files in {settings.parent}, pid {engine_pid})"
    if args and os.path.basename(args[0]) == "haproxy":
        config = _after(args, "-f")
        role = "?"
        if config is not None:
            with contextlib.suppress(OSError):
                first = Path(config).read_text().split("\n", 1)[0]
                role = first.split("for role ", 1)[1].split(";", 1)[0] if "for role " in first else "?"
        where = f"files in {Path(config).parent}, " if config else ""
        return f"the HAProxy load balancer of role {role!r} ({where}pid {pid})"
    name = os.path.basename(args[0]) if args and args[0] else "?"
    return f"pid {pid} ({name})"


def holders(host: str, port: int) -> list[int]:
    """Pids listening on ``port`` at ``host`` or a wildcard address (best effort)."""
    try:
        import psutil

        conns = psutil.net_connections(kind="tcp")
    except Exception:  # noqa: BLE001 - naming the owner is a courtesy; never fail on it
        return []
    wildcard = {"0.0.0.0", "::", host}
    return sorted({
        c.pid for c in conns
        if c.pid is not None and c.status == "LISTEN" and c.laddr and c.laddr.port == port
        and (c.laddr.ip in wildcard or host in ("0.0.0.0", "::"))
    })


def is_in_use(error: OSError) -> bool:
    return error.errno == errno.EADDRINUSE


def in_use(listen: str, host: str, port: int) -> str:
    """The message for a taken address, naming its holder when it can be found."""
    names = list(dict.fromkeys(describe(pid) for pid in holders(host, port) if pid != os.getpid()))
    by = f" by {' and '.join(names)}" if names else " by another program"
    return (
        f"cannot listen on {listen}: address in use{by}; only one load balancer may listen on an "
        "address: stop the other one or change lb.listen"
    )
