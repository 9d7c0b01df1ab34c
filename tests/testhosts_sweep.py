"""Finding and removing test hosts: what a run left behind, whether its owner still lives.

Split from ``testhosts_net`` (which makes hosts) because removal must also work for runs
this process did not make: leftovers of a crashed pytest, or manual runs of
``scripts/testhosts up``. A run is recognised by its names alone (directory, namespaces and
interfaces all carry ``fh-<pid>-<seq>``), so even a run that crashed half-made is found.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/tmp/farmhand-testhosts")
RUN_NAME = re.compile(r"^fh-(\d+)-(\d+)$")
ARTEFACT_NAME = re.compile(r"^fh-?(\d+)-(\d+)")
MANUAL_OWNER = "manual"


def destroy_all(*, stale_only: bool) -> list[str]:
    """Remove runs: the leftovers of dead processes, and manual runs unless ``stale_only``.

    Runs of live pytest processes are never touched. Returns the names removed.
    """
    removed = []
    with lock():  # two processes sweeping the same leftovers would trip over each other
        for name in sorted(run_names()):
            if _is_live(name, keep_manual=stale_only):
                continue
            destroy(name)
            removed.append(name)
    return removed


@contextlib.contextmanager
def lock() -> Iterator[None]:
    """One process at a time makes or sweeps runs (subnets, the user, leftovers)."""
    ROOT.mkdir(mode=0o755, exist_ok=True)
    with open(ROOT / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_runs() -> list[tuple[str, str]]:
    """Every run that left a trace, with its owner ("manual", "<pid> <start>", or a note)."""
    return [(name, _read_owner(name) or "(no owner file)") for name in sorted(run_names())]


def _is_live(name: str, *, keep_manual: bool) -> bool:
    """Whether a run still belongs to someone: a live process, or a person (manual runs)."""
    owner = _read_owner(name)
    if owner == MANUAL_OWNER:
        return keep_manual
    if owner is not None:
        return _owner_alive(owner)
    match = ARTEFACT_NAME.match(name)
    return match is not None and _pid_alive(int(match.group(1)))


def link_name(run_name: str, suffix: str) -> str:
    """Interface names have 15 characters at most: fh<pid>-<seq><suffix>."""
    match = RUN_NAME.match(run_name)
    assert match is not None
    name = f"fh{match.group(1)}-{match.group(2)}{suffix}"
    if len(name) > 15:
        raise ValueError(f"interface name {name} is longer than 15 characters")
    return name


# -- removing ----------------------------------------------------------------------------------


def destroy(name: str) -> None:
    """Remove one run completely; every step runs even when an earlier one failed."""
    errors: list[str] = []
    namespaces = [ns for ns in _netns_names() if ns.startswith(name + "-")]
    pids = {pid for ns in namespaces for pid in _netns_pids(ns)}
    pids.update(_pids_using(ROOT / name))
    _kill_all(pids)
    ours = re.compile(re.escape(link_name(name, "")) + "[bv]")
    for link in _link_names():
        if ours.match(link) and not link.endswith("b"):
            _try(errors, "ip", "link", "del", link)
    for ns in namespaces:
        _try(errors, "ip", "netns", "del", ns)
    for link in _link_names():
        if ours.match(link):
            _try(errors, "ip", "link", "del", link)
    shutil.rmtree(ROOT / name, ignore_errors=True)
    if errors:
        raise RuntimeError(f"removing test hosts {name}: " + "; ".join(errors))


def _kill_all(pids: set[int], timeout: float = 10) -> None:
    """Kill the hosts' inits first (each sshd under ``unshare``: the kernel then kills its
    whole PID namespace and ``unshare`` reaps it), then whatever is left."""
    inits = {child for pid in pids if _comm(pid) == "unshare" for child in children_of(pid)}
    for group in (inits, pids - inits):
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_pid_alive(pid) for pid in group) and time.monotonic() < deadline:
            time.sleep(0.01)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_using(run_dir: Path) -> set[int]:
    """Processes whose command line names the run's directory (sshd outside a lost netns)."""
    needle = str(run_dir).encode() + b"/"
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def _try(errors: list[str], *argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0 and "Cannot find device" not in result.stderr:
        errors.append(f"{' '.join(argv)}: {result.stderr.strip()}")


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# -- looking around ----------------------------------------------------------------------------


def run_names() -> set[str]:
    """Every run that left a trace: a directory, a namespace or an interface."""
    names = set()
    if ROOT.is_dir():
        names.update(p.name for p in ROOT.iterdir() if RUN_NAME.match(p.name))
    for artefact in [*_netns_names(), *_link_names()]:
        match = ARTEFACT_NAME.match(artefact)
        if match:
            names.add(f"fh-{match.group(1)}-{match.group(2)}")
    return names


def _netns_names() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith("fh-")]


def _netns_pids(netns: str) -> set[int]:
    listing = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return {int(pid) for pid in listing.split()}


def _link_names() -> list[str]:
    listing = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in listing.splitlines()]
    return [name for name in names if name.startswith("fh")]


def _read_owner(name: str) -> str | None:
    try:
        return (ROOT / name / "owner").read_text().strip()
    except OSError:
        return None


def owner_stamp(pid: int) -> str:
    return f"{pid} {_start_ticks(pid)}"


def _owner_alive(owner: str) -> bool:
    pid, _, ticks = owner.partition(" ")
    return pid.isdigit() and _pid_alive(int(pid)) and _start_ticks(int(pid)) == ticks


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
