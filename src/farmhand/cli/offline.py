"""A farm's history when no controller runs: events from its database and node logs from
their files, both under .farmhand/ (everything is on disk, so `down` loses no history).

Read-only by intent: the database is opened only when it exists, and nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from farmhand.errors import RequestError, StateError
from farmhand.store.statedir import StateDir

NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""What a node id looks like; anything else could walk out of the log folder."""


def _store(state: StateDir) -> Any:
    from farmhand.store import SqliteStore

    if not state.database.is_file():
        raise StateError(f"farm {state.farm_name()} has no history in {state.path} (it never ran there)")
    return SqliteStore(state.database)


def read_events(state: StateDir, last: int) -> list[dict[str, Any]]:
    """The newest ``last`` events, oldest first."""
    store = _store(state)
    try:
        return [event.to_json() for event in store.events(0, last)]
    finally:
        store.close()


def stored_nodes(state: StateDir) -> list[str]:
    """Nodes the farm still asks for: after a clean `down` there are none."""
    if not state.database.is_file() or state.database.stat().st_size == 0:
        return []
    store = _store(state)
    try:
        return [node.id for node in store.nodes()]
    finally:
        store.close()


def log_folders(state: StateDir) -> list[Path]:
    """Where this machine keeps the farm's node logs: .farmhand/logs/, and the logs/ of any
    local host with its own ``base_dir`` in the farm file that `up` last started."""
    folders = [state.logs]
    farm_file = state.remembered_farm().get("farm_file")
    if farm_file:
        try:
            from farmhand.spec import load_farm

            spec = load_farm(Path(farm_file))
        except Exception:  # an edited or removed farm file: the default folder still holds logs
            return folders
        folders += [Path(host.base_dir) / "logs" for host in spec.hosts.values()
                    if host.driver == "local" and host.base_dir]
    return folders


def read_log(state: StateDir, node: str) -> bytes:
    """A node's whole log from this machine's files; an unknown node names the known ones."""
    if not NODE_NAME.fullmatch(node):
        raise RequestError(f"{node!r} is not a node name (see `farmhand events`)", "node", 400)
    folders = log_folders(state)
    for folder in folders:
        path = folder / f"{node}.log"
        if path.is_file():
            return path.read_bytes()
    known = sorted({path.stem for folder in folders if folder.is_dir() for path in folder.glob("*.log")})
    raise RequestError(f"no log of node {node} on this machine (farm {state.farm_name()} is down); "
                       f"nodes with logs: {', '.join(known) or 'none'}", "node", 404)
