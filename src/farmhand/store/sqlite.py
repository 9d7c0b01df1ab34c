"""SQLite store in WAL mode: one file under .farmhand/, safe against a crash at any moment.

Each write is its own transaction (autocommit) unless it runs inside ``batch()``, which makes
a tick's writes one transaction (one fsync, not one per node). WAL keeps readers (the CLI's
``status`` offline, a second process) from blocking the controller. Calls are synchronous:
each takes well under a millisecond, cheaper than a hop to a thread.

Nodes and roles are also kept in memory, written through: the controller is the only writer
of its farm's database, so reads (several per tick, each over every node) cost no query and
no row conversion, and a tick at rest touches the file not at all. A short log of which nodes
changed (``changed_since``) lets readers redo their work for those nodes only.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from farmhand.errors import StateError
from farmhand.records import Event, Mark, NodeRecord, NodeState, OnStop, RoleState
from farmhand.store.base import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL,
    fingerprint TEXT NOT NULL, created_at REAL NOT NULL, state_since REAL NOT NULL,
    port INTEGER, pid INTEGER, started_at REAL, restarts INTEGER NOT NULL DEFAULT 0,
    mark TEXT NOT NULL DEFAULT '', on_stop TEXT NOT NULL DEFAULT 'remove',
    killed INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '', move_to TEXT
);
CREATE TABLE IF NOT EXISTS roles (
    name TEXT PRIMARY KEY, wanted INTEGER, failures INTEGER NOT NULL DEFAULT 0,
    backoff_until REAL NOT NULL DEFAULT 0, failed_at REAL NOT NULL DEFAULT 0,
    wanted_by TEXT NOT NULL DEFAULT 'file', file_bounds TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    role TEXT, node TEXT, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ROLE_COLUMNS = ("name", "wanted", "failures", "backoff_until", "failed_at", "wanted_by", "file_bounds")
ADDED_COLUMNS = {"roles": {"failed_at": "REAL NOT NULL DEFAULT 0", "wanted_by": "TEXT NOT NULL DEFAULT 'file'",
                           "file_bounds": "TEXT NOT NULL DEFAULT ''"}}
"""Columns newer than the first schema: a farm's existing database gets them on open."""
CHANGE_LOG_MIN = 4096
"""The change log keeps at least this many entries (and twice the node count) before it
forgets its oldest half."""
NODE_COLUMNS = ("id", "role", "host", "state", "fingerprint", "created_at", "state_since", "port",
                "pid", "started_at", "restarts", "mark", "on_stop", "killed", "reason", "move_to")

PUT_NODE = f"INSERT OR REPLACE INTO nodes ({', '.join(NODE_COLUMNS)}) VALUES ({', '.join('?' for _ in NODE_COLUMNS)})"
PUT_ROLE = f"INSERT OR REPLACE INTO roles ({', '.join(ROLE_COLUMNS)}) VALUES ({', '.join('?' for _ in ROLE_COLUMNS)})"


class SqliteStore(Store):
    def __init__(self, path: str | Path) -> None:
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
            rows = self._db.execute(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes ORDER BY role, created_at")
            self._nodes = {node.id: node for node in map(_node_from_row, rows)}
            self._roles = {row[0]: RoleState(**dict(zip(ROLE_COLUMNS, row, strict=True)))
                           for row in self._db.execute(f"SELECT {', '.join(ROLE_COLUMNS)} FROM roles")}
        except sqlite3.Error as error:
            raise StateError(f"cannot open the farm's database {path}: {error}") from error
        self.version = 0
        """Grows with every change to nodes or roles: readers skip work when it has not moved."""
        self._order: list[str] | None = None
        """Node ids by role, then age: rebuilt only when a node comes, goes or changes role."""
        self._batch_depth = 0
        self._log_versions: list[int] = []
        self._log_nodes: list[tuple[str, str]] = []
        self._log_floor = 0
        """Every change after this version is in the log."""

    def _add_missing_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def __repr__(self) -> str:
        return f"<SqliteStore [nodes: {len(self._nodes)} | roles: {len(self._roles)}]>"

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write inside one transaction (nested batches join the outer one)."""
        self._batch_depth += 1
        if self._batch_depth == 1:
            self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            if self._batch_depth == 1:
                self._db.execute("COMMIT")  # what was written was acted on: keep it
            raise
        else:
            if self._batch_depth == 1:
                self._db.execute("COMMIT")
        finally:
            self._batch_depth -= 1

    def nodes(self) -> list[NodeRecord]:
        if self._order is None:
            self._order = [n.id for n in sorted(self._nodes.values(), key=lambda n: (n.role, n.created_at))]
        return [self._nodes[node_id] for node_id in self._order]

    def node(self, node_id: str) -> NodeRecord | None:
        return self._nodes.get(node_id)

    def put_node(self, node: NodeRecord) -> None:
        values = (node.id, node.role, node.host, node.state.value, node.fingerprint, node.created_at,
                  node.state_since, node.port, node.pid, node.started_at, node.restarts, node.mark.value,
                  node.on_stop.value, int(node.killed), node.reason, node.move_to)
        self._db.execute(PUT_NODE, values)
        previous = self._nodes.get(node.id)
        self._nodes[node.id] = node
        self.version += 1
        self._logged(node.id, node.host)
        if previous is None or (previous.role, previous.created_at) != (node.role, node.created_at):
            self._order = None

    def delete_node(self, node_id: str) -> None:
        self._db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
        gone = self._nodes.pop(node_id, None)
        if gone is not None:
            self._order = None
            self.version += 1
            self._logged(node_id, gone.host)

    def changed_since(self, version: int) -> list[tuple[str, str]] | None:
        if version < self._log_floor:
            return None
        return self._log_nodes[bisect.bisect_right(self._log_versions, version):]

    def _logged(self, node_id: str, host: str) -> None:
        self._log_versions.append(self.version)
        self._log_nodes.append((node_id, host))
        if len(self._log_versions) > max(CHANGE_LOG_MIN, 2 * len(self._nodes)):
            half = len(self._log_versions) // 2
            self._log_floor = self._log_versions[half - 1]
            del self._log_versions[:half], self._log_nodes[:half]

    def roles(self) -> dict[str, RoleState]:
        return dict(self._roles)

    def put_role(self, role: RoleState) -> None:
        values = tuple(getattr(role, column) for column in ROLE_COLUMNS)
        self._db.execute(PUT_ROLE, values)
        self._roles[role.name] = role
        self.version += 1

    def add_event(self, event: Event) -> Event:
        cursor = self._db.execute(
            "INSERT INTO events (ts, kind, role, node, message) VALUES (?, ?, ?, ?, ?)",
            (event.ts, event.kind, event.role, event.node, event.message),
        )
        return Event(event.ts, event.kind, event.message, event.role, event.node, cursor.lastrowid)

    def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._db.execute(
            "SELECT seq, ts, kind, role, node, message FROM events WHERE seq > ? ORDER BY seq DESC LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Event(ts, kind, message, role, node, seq) for seq, ts, kind, role, node, message in reversed(rows)]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()


def _node_from_row(row: tuple[object, ...]) -> NodeRecord:
    data = dict(zip(NODE_COLUMNS, row, strict=True))
    data["state"] = NodeState(str(data["state"]))
    data["mark"] = Mark(str(data["mark"]))
    data["on_stop"] = OnStop(str(data["on_stop"]))
    data["killed"] = bool(data["killed"])
    return NodeRecord(**data)  # type: ignore[arg-type]
