"""Answers of many hosts, folded for people: hosts whose output and exit status are equal are
shown once under their folded node set and count, the way ``clush -b`` does. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def fold(names: Iterable[str]) -> str:
    """``targets.fold``, imported when first needed: it brings ClusterShell and the farm
    file's models, which the streamed output of ``farmhand exec`` through a running
    controller never needs (a fifth of that command's start-up)."""
    from farmhand.fleet import targets

    return targets.fold(names)


UNREACHABLE = 255
"""The exit status of a host that could not be reached (ssh's and clush's)."""
TIMED_OUT = 124
"""The exit status of a command killed at its timeout (timeout(1)'s)."""


@dataclass(frozen=True)
class HostResult:
    """What one host answered, or why it did not."""

    host: str
    status: int
    output: bytes = b""
    """stdout, then stderr."""
    error: str | None = None
    """Set when the host was not reached (then ``status`` is UNREACHABLE)."""
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def reached(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "output": self.output.decode(errors="replace"),
                "error": self.error, "timed_out": self.timed_out, "seconds": round(self.seconds, 4)}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> HostResult:
        return cls(host=row["host"], status=int(row["status"]), output=str(row.get("output") or "").encode(),
                   error=row.get("error"), timed_out=bool(row.get("timed_out")),
                   seconds=float(row.get("seconds") or 0.0))


@dataclass(frozen=True)
class Gathered:
    """Hosts that answered the same: their folded set, how many, the output and status."""

    nodes: str
    count: int
    status: int
    output: bytes


def gather(results: Iterable[HostResult]) -> list[Gathered]:
    """Reached hosts grouped by (output, status); the largest groups first, then by name."""
    groups: dict[tuple[bytes, int], list[str]] = {}
    for result in results:
        if result.reached:
            groups.setdefault((result.output, result.status), []).append(result.host)
    folded = [Gathered(fold(hosts), len(hosts), status, output) for (output, status), hosts in groups.items()]
    return sorted(folded, key=lambda g: (-g.count, g.nodes))


def exit_status(results: Iterable[HostResult]) -> int:
    """The largest of the hosts' exit statuses (0 for none), as clush does."""
    return max((r.status for r in results), default=0)


def prefixed(result: HostResult) -> list[str]:
    """A host's output as ``host: line`` lines (a last line without newline included)."""
    text = result.output.decode(errors="replace")
    return [f"{result.host}: {line}" for line in text.splitlines()]


def gathered_text(results: list[HostResult]) -> str:
    """The ``-b`` view: a block per distinct answer, then the hosts that were not reached."""
    lines: list[str] = []
    for group in gather(results):
        status = f", exit {group.status}" if group.status else ""
        title = f"{group.nodes} ({group.count}{status})"
        rule = "-" * max(15, len(title))
        lines += [rule, title, rule]
        lines += group.output.decode(errors="replace").splitlines()
    return "\n".join(lines) + ("\n" if lines else "")


def problems_text(results: Iterable[HostResult]) -> str:
    """Unreachable and timed-out hosts, apart, each with its reason (folded when equal)."""
    unreachable: dict[str, list[str]] = {}
    timed_out: list[str] = []
    failed: dict[int, list[str]] = {}
    for result in results:
        if result.error is not None:
            unreachable.setdefault(result.error, []).append(result.host)
        elif result.timed_out:
            timed_out.append(result.host)
        elif result.status:
            failed.setdefault(result.status, []).append(result.host)
    lines = [f"unreachable: {fold(hosts)}: {reason}" for reason, hosts in sorted(unreachable.items())]
    if timed_out:
        lines.append(f"timed out (command killed): {fold(timed_out)}")
    lines += [f"exit {status}: {fold(hosts)}" for status, hosts in sorted(failed.items())]
    return "\n".join(lines) + ("\n" if lines else "")


def progress_text(done: int, total: int, left: list[str]) -> str:
    """The line shown while stragglers run: how many are done and who is left."""
    shown = fold(left) if len(left) <= 200 else f"{len(left)} hosts"
    return f"{done}/{total} done; waiting for {shown}"
