"""This machine's processes read straight from /proc, a whole host's nodes in one pass.

Why not psutil here: the local driver asks about every node every second (is it still the
same process? its CPU, memory, connections). psutil builds an object per process and, for
connections, rereads the kernel's whole TCP tables once per process; with 30 nodes that alone
cost a fifth of a core. One read of ``/proc/PID/stat`` gives a node's state, start time, CPU
time and resident memory together; the TCP tables are read once per pass and matched to each
node's socket descriptors.

The figures mean what psutil's mean, so nothing above notices the change: the start time is
psutil's ``create_time()`` (boot time + start ticks / CLK_TCK, to the same float), CPU % is
its ``cpu_percent()`` (CPU seconds over wall seconds between two readings, 0.0 the first
time), RSS its ``memory_info().rss``, and connections the count of its
``net_connections("tcp")`` (IPv4 and IPv6 TCP sockets the process holds, listening ones
included).

The parsers are pure functions of the file's bytes; ``ProcReader`` does the reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = "/proc"
TCP_TABLES = ("net/tcp", "net/tcp6")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` that a node's liveness and metrics need."""

    state: str
    """One letter: R, S, D, Z (zombie), T, X (dead), ..."""
    cpu_ticks: int
    """User + system time of the process itself (not of its reaped children)."""
    start_ticks: int
    """Clock ticks from boot to the process's start: never changes for a process."""
    rss_pages: int

    @property
    def gone(self) -> bool:
        """A zombie or a dead process: it no longer runs, whatever its pid says."""
        return self.state in ("Z", "X", "x")


def parse_stat(data: bytes) -> ProcStat | None:
    """``/proc/PID/stat``'s contents; None when they do not parse (a torn read).

    The command name (field 2) is in parentheses and may itself hold spaces and
    parentheses, so fields are counted from the *last* closing parenthesis."""
    end = data.rfind(b")")
    if end < 0:
        return None
    fields = data[end + 2:].split()
    try:
        # after the name: state(0) ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime(11) stime(12) cutime cstime priority nice threads itreal
        # starttime(19) vsize rss(21)
        return ProcStat(fields[0].decode(), int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[21]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def parse_boot_time(data: bytes) -> float | None:
    """The ``btime`` line of ``/proc/stat``: the boot time in seconds since the epoch."""
    for line in data.splitlines():
        if line.startswith(b"btime"):
            parts = line.split()
            return float(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return None


def start_time(stat: ProcStat, boot_time: float) -> float:
    """The process's start in seconds since the epoch, as psutil's ``create_time()``."""
    return stat.start_ticks / CLOCK_TICKS + boot_time


def parse_tcp_inodes(data: bytes) -> set[int]:
    """The socket inodes of a ``/proc/net/tcp`` or ``tcp6`` table (0 means no owner: a
    socket in TIME_WAIT, say, which no process holds, and is left out)."""
    inodes: set[int] = set()
    for line in data.splitlines()[1:]:
        fields = line.split(None, 10)
        if len(fields) > 9 and fields[9] != b"0" and fields[9].isdigit():
            inodes.add(int(fields[9]))
    return inodes


def socket_inode(link: str) -> int | None:
    """The inode of a descriptor link like ``socket:[12345]``; None for anything else."""
    if link.startswith("socket:[") and link.endswith("]"):
        number = link[8:-1]
        return int(number) if number.isdigit() else None
    return None


def cpu_percent(before: tuple[float, int] | None, now: float, ticks: int) -> float:
    """CPU % of one core between two readings ``(time, ticks)``; 0.0 without an earlier one
    (psutil's first ``cpu_percent(None)`` answers 0.0 too)."""
    if before is None or now <= before[0] or ticks < before[1]:
        return 0.0
    return 100.0 * (ticks - before[1]) / CLOCK_TICKS / (now - before[0])


class ProcReader:
    """Reads /proc for a pass over many processes: the boot time and the TCP tables once per
    pass (``begin``), each process's stat file and descriptors once."""

    def __init__(self, root: str = PROC) -> None:
        self.root = root
        self.boot_time = 0.0
        self._tcp: set[int] | None = None
        self.begin()

    def __repr__(self) -> str:
        return f"<ProcReader {self.root} [boot {self.boot_time:.0f}]>"

    def begin(self) -> None:
        """Start a pass: read the boot time again (psutil reads it on every call, so a
        clock that was stepped moves both alike) and forget the last pass's TCP table."""
        self._tcp = None
        try:
            boot = parse_boot_time(_read(f"{self.root}/stat"))
        except OSError:
            boot = None
        if boot is not None:
            self.boot_time = boot

    def stat(self, pid: int) -> ProcStat | None:
        """The process's stat, or None when there is no such process."""
        try:
            return parse_stat(_read(f"{self.root}/{pid}/stat"))
        except OSError:
            return None

    def tcp_connections(self, pid: int) -> int | None:
        """How many TCP sockets ``pid`` holds; None when its descriptors cannot be read."""
        if self._tcp is None:
            self._tcp = self._tcp_inodes()
        folder = f"{self.root}/{pid}/fd"
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        count = 0
        for name in names:
            try:
                inode = socket_inode(os.readlink(f"{folder}/{name}"))
            except OSError:
                continue  # closed meanwhile
            if inode is not None and inode in self._tcp:
                count += 1
        return count

    def _tcp_inodes(self) -> set[int]:
        inodes: set[int] = set()
        for table in TCP_TABLES:
            try:
                inodes |= parse_tcp_inodes(_read(f"{self.root}/{table}"))
            except OSError:
                continue  # no IPv6 on this machine
        return inodes


class CpuMeter:
    """CPU % per process between this pass and the last one, keyed by (pid, start ticks) so
    a recycled pid starts afresh. Processes not seen in a pass are forgotten."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], tuple[float, int]] = {}

    def __repr__(self) -> str:
        return f"<CpuMeter [processes: {len(self._last)}]>"

    def percent(self, pid: int, stat: ProcStat, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        key = (pid, stat.start_ticks)
        value = cpu_percent(self._last.get(key), now, stat.cpu_ticks)
        self._last[key] = (now, stat.cpu_ticks)
        return value

    def keep_only(self, pids: Iterable[int]) -> None:
        keep = set(pids)
        self._last = {k: v for k, v in self._last.items() if k[0] in keep}


def _read(path: str) -> bytes:
    with open(path, "rb", buffering=0) as file:
        return file.read()
