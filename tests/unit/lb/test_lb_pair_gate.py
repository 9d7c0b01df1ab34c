"""The SMTP gate as a load-balancer pair: the configuration each member's gate runs with,
what the member's handle steers, and keepalived's check of it. No host is touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from farmhand.controller.planes import make_data_plane
from farmhand.errors import GateError
from farmhand.gate.config import GateConfig
from farmhand.gate.dataplane import GateDataPlane, member_config
from farmhand.lb import keepalived_config as kc
from farmhand.lb.pair import PairDataPlane
from farmhand.spec import parse_farm
from tests.unit.lb.pairkit import pair_farm

FARM = pair_farm(role="mx", command="smtpd {port}", listen="10.213.0.100:25",
                 before_members='mode = "tcp"\ngate = "smtp-delay"\n',
                 after='[roles.mx.lb.gate_options]\nno_ptr_delay = "3s"\n')


def test_a_gated_pair_runs_the_gate_on_every_member(tmp_path: Path) -> None:
    role = parse_farm(FARM).roles["mx"]
    plane = make_data_plane("mx", role, tmp_path)
    assert isinstance(plane, PairDataPlane) and plane.engine == "gate"
    member = plane.members["lb1"]
    assert member.direct and member.plan.gate is not None
    member.dir, member.interface = "/base/lb/mx", "eth0"  # what connecting would learn
    assert member.control_socket == "/base/lb/mx/gate/mx/control.sock"
    assert member.member_config().check_port == 25


def test_the_member_config_is_a_gate_config_on_all_addresses() -> None:
    lb = parse_farm(FARM).roles["mx"].lb
    assert lb is not None
    config = member_config("mx", lb)
    read = GateConfig.from_json({**config, "state_dir": "/base/lb/mx"})
    assert read.listen == "0.0.0.0:25" and read.options.no_ptr_delay == 3.0
    assert config["options_hash"] == read.options_hash(), "an adopted gate with these options needs none sent"


def test_a_single_gate_stays_local(tmp_path: Path) -> None:
    text = FARM.replace('hosts = ["lb1", "lb2"]\nvip = "10.213.0.100/24"\n', "").replace("10.213.0.100:25", "127.0.0.1:2525")
    role = parse_farm(text).roles["mx"]
    assert isinstance(make_data_plane("mx", role, tmp_path), GateDataPlane)
    assert role.lb is not None
    with pytest.raises(GateError, match="tcp listener"):
        member_config("mx", role.lb.model_copy(update={"mode": "http"}))


def test_the_gate_check_follows_its_pidfile(tmp_path: Path) -> None:
    script = tmp_path / "check"
    pidfile = tmp_path / "gate.pid"
    script.write_text(kc.check_pid_script(str(pidfile)))

    def check() -> int:
        return subprocess.run(["/bin/sh", str(script)], check=False).returncode

    assert check() != 0, "no pidfile: no gate"
    pidfile.write_text(f"{os.getpid()}\n")
    assert check() == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile.write_text(f"{gone.pid}\n")
    assert check() != 0, "a pid that is gone"
