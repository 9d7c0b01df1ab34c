"""The SQLite store keeps intent across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.errors import StateError
from farmhand.records import Event, Mark, NodeRecord, NodeState, OnStop, RoleState
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir


def test_nodes_roles_events_and_meta_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "farm.db"
    store = SqliteStore(path)
    node = NodeRecord("web-1", "web", "local", NodeState.STOPPING, "abc", 1.0, 2.0, port=8000, pid=42,
                      started_at=1.5, restarts=2, mark=Mark.REPLACE, on_stop=OnStop.RESTART, killed=True, reason="r")
    store.put_node(node)
    store.put_role(RoleState("web", wanted=4, failures=1, backoff_until=9.0, failed_at=8.0, wanted_by="scale",
                             file_bounds="count=3"))
    first = store.add_event(Event(1.0, "node.created", "web-1 created", "web", "web-1"))
    store.add_event(Event(2.0, "node.started", "web-1 started", "web", "web-1"))
    store.set_meta("k", "v")
    store.close()
    again = SqliteStore(path)
    assert again.nodes() == [node] and again.node("web-1") == node
    assert again.roles() == {"web": RoleState("web", 4, 1, 9.0, 8.0, "scale", "count=3")}
    assert [e.kind for e in again.events()] == ["node.created", "node.started"]
    assert [e.kind for e in again.events(after=first.seq or 0)] == ["node.started"]
    assert [e.kind for e in again.events(limit=1)] == ["node.started"], "the newest when limited"
    assert again.get_meta("k") == "v"
    again.delete_node("web-1")
    assert again.nodes() == []


def test_the_controller_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".farmhand")
    state.create()
    held = state.lock()
    with pytest.raises(StateError, match="another controller"):
        state.lock()
    held.close()
    state.lock().close()


def test_the_token_is_made_once_and_private(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".farmhand")
    state.create()
    token = state.token()
    assert state.token() == token and len(token) >= 24
    assert state.token_file.stat().st_mode & 0o777 == 0o600


def test_find_walks_up_and_explains_when_there_is_no_farm(tmp_path: Path) -> None:
    (tmp_path / ".farmhand").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert StateDir.find(tmp_path / "a" / "b").path == tmp_path / ".farmhand"
    with pytest.raises(StateError, match="run this in the farm's folder"):
        StateDir.find(Path("/"))


def test_data_plane_folders_stay_short_enough_for_unix_sockets(tmp_path: Path) -> None:
    from farmhand.control_channel import SOCKET_PATH_ROOM, runtime_dir

    shallow = runtime_dir(tmp_path / "s", "lb/web") if len(str(tmp_path)) < 40 else None
    if shallow is not None:
        assert shallow == (tmp_path / "s" / "lb" / "web").resolve()
    deep_state = tmp_path / ("d" * 120)
    folder = runtime_dir(deep_state, "lb/web", "admin.sock")
    assert len(str(folder / "admin.sock")) <= SOCKET_PATH_ROOM
    assert (deep_state / "lb" / "web").resolve() == folder, "linked from the state folder, so its logs are found"
    assert runtime_dir(deep_state, "lb/web", "admin.sock") == folder, "the same folder every time"


def test_a_database_from_before_count_sources_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE roles (name TEXT PRIMARY KEY, wanted INTEGER, failures INTEGER NOT NULL DEFAULT 0, "
                    "backoff_until REAL NOT NULL DEFAULT 0, next_index INTEGER NOT NULL DEFAULT 1)")
        old.execute("INSERT INTO roles VALUES ('web', 5, 1, 3.0, 9)")
    store = SqliteStore(path)
    assert store.roles() == {"web": RoleState("web", 5, 1, 3.0, 0.0, "file", "")}
    store.put_role(RoleState("web", 2, wanted_by="scale", file_bounds="count=3"))
    assert store.roles()["web"].wanted_by == "scale"
