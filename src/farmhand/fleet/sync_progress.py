"""One progress figure for a whole `farmhand sync`: every host's rsync, added up (pure).

Each host's rsync runs with ``--info=progress2``, which rewrites one line (``\\r``) as it
goes::

          1,200,000  13%  101.20MB/s    0:00:00 (xfr#4, to-chk=26/31)

The first number is the bytes sent so far; ``to-chk=N/M`` says N of the M entries of the
file list are still to be checked. The percentage is left alone: it is of the whole tree's
size and stays low when most files are unchanged (nothing is sent for them), so files
checked is the measure of done. Over all hosts: done = sum of (M - N), total = sum of M, a
host not yet reporting counted with the largest M seen (the same tree goes everywhere), a
finished host as all done. ``--stats`` at the end gives each host's files and bytes
transferred, for the summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

PROGRESS = re.compile(r"^\s*([\d,]+)\s+\d+%\s+\S+\s+[\d:]+(?:\s+\(xfr#\d+,\s*(?:ir|to)-chk=(\d+)/(\d+)\))?")
_STAT = re.compile(r"^(Number of regular files transferred|Total transferred file size|Number of files):"
                   r"\s*([\d,]+)", re.M)


@dataclass(frozen=True)
class RsyncProgress:
    bytes: int
    to_check: int | None = None
    entries: int | None = None
    """The file list's length (files, folders, links), once rsync says it."""


@dataclass(frozen=True)
class RsyncStats:
    files: int = 0
    """Regular files transferred."""
    bytes: int = 0
    """Their total size."""
    entries: int = 0


def parse_progress(line: str) -> RsyncProgress | None:
    """One ``--info=progress2`` line, or None for any other line."""
    match = PROGRESS.match(line)
    if not match:
        return None
    sent = int(match[1].replace(",", ""))
    if match[2] is None:
        return RsyncProgress(sent)
    return RsyncProgress(sent, int(match[2]), int(match[3]))


def split_updates(buffer: str) -> tuple[list[str], str]:
    """Complete lines (ended by ``\\r`` or ``\\n``) and the unfinished rest."""
    parts = re.split(r"[\r\n]", buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


def parse_stats(text: str) -> RsyncStats | None:
    """rsync's ``--stats`` block, or None when there is none (rsync failed before it)."""
    found = {name: int(value.replace(",", "")) for name, value in _STAT.findall(text)}
    if "Number of regular files transferred" not in found:
        return None
    return RsyncStats(files=found["Number of regular files transferred"],
                      bytes=found.get("Total transferred file size", 0), entries=found.get("Number of files", 0))


@dataclass(frozen=True)
class Overall:
    checked: int
    entries: int | None
    """None until some host has said how long its file list is."""
    bytes: int
    hosts_done: int
    hosts: int


@dataclass
class Tally:
    """Every host's latest progress and end; ``overall()`` adds them up."""

    hosts: list[str]
    latest: dict[str, RsyncProgress] = field(default_factory=dict)
    finished: dict[str, RsyncStats | None] = field(default_factory=dict)

    def update(self, host: str, progress: RsyncProgress) -> None:
        before = self.latest.get(host)
        if progress.entries is None and before is not None:
            progress = RsyncProgress(progress.bytes, before.to_check, before.entries)
        self.latest[host] = progress

    def finish(self, host: str, stats: RsyncStats | None) -> None:
        self.finished[host] = stats

    def overall(self) -> Overall:
        known = [p.entries for p in self.latest.values() if p.entries is not None]
        known += [s.entries for s in self.finished.values() if s is not None and s.entries]
        guess = max(known) if known else None
        checked, entries, sent = 0, 0, 0
        for host in self.hosts:
            progress, stats = self.latest.get(host), self.finished.get(host)
            size = progress.entries if progress is not None and progress.entries is not None else guess
            if host in self.finished:
                total = stats.entries if stats is not None and stats.entries else size or 0
                checked, entries = checked + total, entries + total
                sent += stats.bytes if stats is not None else (progress.bytes if progress else 0)
                continue
            if progress is not None:
                sent += progress.bytes
                if progress.entries is not None and progress.to_check is not None:
                    checked += progress.entries - progress.to_check
            entries += size or 0
        return Overall(checked=checked, entries=entries if guess is not None else None, bytes=sent,
                       hosts_done=len(self.finished), hosts=len(self.hosts))


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} bytes"


def summary(stats: Iterable[RsyncStats | None], hosts: int) -> str:
    """``3 hosts: 12 files (2.7 MB) transferred, 93 entries checked`` for a plain terminal."""
    known = [s for s in stats if s is not None]
    files, sent, entries = sum(s.files for s in known), sum(s.bytes for s in known), sum(s.entries for s in known)
    return (f"{hosts} host{'s' if hosts != 1 else ''}: {files} file{'s' if files != 1 else ''} "
            f"({human_bytes(sent)}) transferred, {entries} entries checked")
