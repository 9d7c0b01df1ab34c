"""The command line's parts that need no farm: the loop runner, the state folder's rules,
history read from disk, how a broken balancer and a bare URL are shown."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from rich.console import Console

from farmhand.cli.change import check_url
from farmhand.cli.offline import read_events, read_log
from farmhand.cli.render import lb_text, status_tables
from farmhand.cli.run import run_async
from farmhand.errors import RequestError, StateError
from farmhand.records import Event
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir


def test_an_import_error_from_the_farm_keeps_its_message_and_runs_once() -> None:
    runs = []

    async def farm() -> None:
        runs.append(1)
        raise ImportError("No module named 'farmhand.drivers.nowhere'")

    with pytest.raises(ImportError, match="farmhand.drivers.nowhere"):
        run_async(farm())
    assert runs == [1], "the coroutine must not be retried"


def test_the_state_folder_is_private_and_tightens_what_an_older_version_left(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".farmhand")
    state.path.mkdir()
    old = state.path / "controller.log"
    old.write_text("old run\n")
    old.chmod(0o644)
    state.create()
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.logs.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.database.stat().st_mode) == 0o600
    state.write_api("http://127.0.0.1:1", 1, tmp_path / "farm.toml")
    state.remember_farm(tmp_path / "farm.toml", "demo")
    for path in (state.api_file, state.farm_record):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state.remembered_farm() == {"farm_file": str((tmp_path / "farm.toml").resolve()), "name": "demo"}
    assert state.farm_name() == "demo"


def test_the_controller_is_known_by_its_lock_not_by_a_stale_address(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".farmhand")
    state.create()
    assert state.controller_pid() is None
    state.write_api("http://127.0.0.1:1", 4242, tmp_path / "farm.toml")
    assert state.controller_pid() is None, "a kill -9 leaves api.json behind; nobody holds the lock"
    held = state.lock()
    try:
        assert state.controller_pid() == 4242
        assert [s.path for s in StateDir.running_below(tmp_path.parent)] == [state.path]
    finally:
        held.close()
    assert state.controller_pid() is None


def test_history_is_read_from_the_store_and_log_names_cannot_leave_the_log_folder(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".farmhand")
    with pytest.raises(StateError, match="never ran"):
        read_events(state, 10)
    state.create()
    store = SqliteStore(state.database)
    for number in range(5):
        store.add_event(Event(ts=float(number), kind="node.started", message=f"event {number}"))
    store.close()
    assert [e["message"] for e in read_events(state, 2)] == ["event 3", "event 4"]
    assert len(read_events(state, 50)) == 5

    (state.logs / "web-1.log").write_bytes(b"web-1 listening\n")
    assert read_log(state, "web-1") == b"web-1 listening\n"
    with pytest.raises(RequestError, match="nodes with logs: web-1"):
        read_log(state, "web-9")
    for bad in ("../token", "..", "/etc/passwd", ".hidden", "a/b"):
        with pytest.raises(RequestError, match="not a node name"):
            read_log(state, bad)


def test_a_bare_address_is_refused_with_the_fix() -> None:
    assert check_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
    assert check_url("HTTPS://example.test/") == "HTTPS://example.test/"
    with pytest.raises(click.BadParameter, match=r"needs http:// \(or https://\): try http://127.0.0.1:8080"):
        check_url("127.0.0.1:8080")
    with pytest.raises(click.BadParameter, match="needs http://"):
        check_url("ftp://127.0.0.1/")


def test_a_balancer_that_cannot_listen_shows_as_broken_with_its_reason() -> None:
    broken = {"name": "web", "lb": "127.0.0.1:8080", "lb_state": "broken", "lb_error": "address in use by pid 7"}
    assert str(lb_text(broken)) == "127.0.0.1:8080 broken: address in use by pid 7"
    listening = {"name": "web", "lb": "127.0.0.1:8080", "lb_state": "listening", "lb_stats": {"requests_per_s": 8.2}}
    assert str(lb_text(listening)) == "127.0.0.1:8080  8 req/s"
    assert lb_text({"name": "web", "lb": None}) == "-"

    console = Console(width=200, record=True)
    status_tables(console, {"farm": "demo", "time": 0, "nodes": [], "hosts": [],
                            "roles": [{**broken, "wanted": 1, "running": 1, "healthy": 1}]})
    assert "broken: address in use by pid 7" in console.export_text()


def test_a_balancer_pair_says_who_holds_its_address_and_which_member_is_in_trouble() -> None:
    pair = {"vip": "10.213.0.100", "holder": "lb2",
            "members": {"lb1": {"state": "BACKUP", "balancer": "running", "reachable": True},
                        "lb2": {"state": "MASTER", "balancer": "running", "reachable": True},
                        "lb3": {"state": "FAULT", "balancer": "down", "reachable": True}}}
    role = {"name": "web", "lb": "10.213.0.100:80", "lb_state": "listening", "lb_pair": pair}
    text = lb_text(role)
    assert str(text) == "10.213.0.100:80\n10.213.0.100 on lb2; lb1 backup, lb3 fault balancer down"
    assert any(span.style == "red" and str(text)[span.start:span.end] == "lb3 fault balancer down"
               for span in text.spans)  # type: ignore[union-attr]
    nobody = {**pair, "holder": None, "members": {"lb1": {"state": "unknown", "reachable": False}}}
    assert str(lb_text({**role, "lb_pair": nobody})).endswith("10.213.0.100 held by no member; lb1 unknown out of reach")
