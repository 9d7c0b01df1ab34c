"""From the farm file's lb section to engine settings."""

from __future__ import annotations

from pathlib import Path

from farmhand.lb import make_data_plane
from farmhand.lb.builtin.dataplane import BuiltinDataPlane
from farmhand.lb.haproxy.dataplane import HaproxyDataPlane
from farmhand.lb.settings import EngineSettings, check_from_spec
from farmhand.spec.models import HealthSpec, LbSpec


def test_settings_from_spec_and_back_through_json() -> None:
    lb = LbSpec(listen="127.0.0.1:8080", mode="tcp", balance="source", workers=3, drain_timeout="7s",
                http_request_timeout="3s")
    settings = EngineSettings.from_spec("web", lb, HealthSpec(type="http", path="/up", rise=2, interval="250ms"))
    assert (settings.listen, settings.mode, settings.balance, settings.workers) == ("127.0.0.1:8080", "tcp", "source", 3)
    assert settings.drain_timeout == 7.0 and settings.http_request_timeout == 3.0
    assert LbSpec(listen="127.0.0.1:8080").http_request_timeout == 10.0
    assert settings.check.path == "/up" and settings.check.rise == 2 and settings.check.interval == 0.25
    assert EngineSettings.from_json(settings.to_json()) == settings
    assert "role 'web'" in settings.where


def test_exec_or_missing_checks_become_tcp_connects() -> None:
    assert check_from_spec(None).type == "tcp"
    assert check_from_spec(HealthSpec(type="exec", command="true")).type == "tcp"


def test_only_listen_mode_workers_and_engine_need_a_restart() -> None:
    base = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=1)
    assert EngineSettings(role="web", listen_host="127.0.0.1", listen_port=1, balance="leastconn").restart_key() == base.restart_key()
    assert base.with_workers(4).restart_key() != base.restart_key()


def test_make_data_plane_picks_the_engine_and_the_state_folder(tmp_path: Path) -> None:
    builtin = make_data_plane("web", LbSpec(listen="127.0.0.1:8080"), None, tmp_path)
    haproxy = make_data_plane("api", LbSpec(listen="127.0.0.1:8081", engine="haproxy"), None, tmp_path)
    assert isinstance(builtin, BuiltinDataPlane) and builtin.run_dir == (tmp_path / "lb" / "web").resolve()
    assert isinstance(haproxy, HaproxyDataPlane) and haproxy.run_dir == (tmp_path / "lb" / "api").resolve()
