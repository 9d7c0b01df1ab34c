"""`farmhand exec` on test hosts (each its own sshd in a network namespace): gathering on ten
hosts, a host that is cut off, a command killed at its timeout, and the same verb through a
running controller's open connections."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.farmkit import Farm, wait_for
from tests.integration.fleet.conftest import hosts_toml

pytestmark = pytest.mark.slow


def test_ten_hosts_answer_once_gathered(make_farm: Callable[..., Farm], testhosts: Any) -> None:
    run = testhosts(10)
    farm = make_farm(hosts_toml(run, '[groups]\nodd = ["h[1-9/2]"]\n'))
    gathered = farm.cli("exec", "h[1-10]", "-b", "--", "uname", "-s")
    assert gathered.stdout.splitlines()[1] == "h[1-10] (10)"
    assert gathered.stdout.count("Linux") == 1, gathered.stdout
    streamed = farm.cli("exec", "@odd", "--", "echo", "hi")
    assert sorted(streamed.stdout.splitlines()) == [f"h{i}: hi" for i in (1, 3, 5, 7, 9)]
    answer = json.loads(farm.cli("exec", "h[1-10]!h2", "--json", "--", "exit 3", check=False).stdout)
    assert answer["status"] == 3 and len(answer["results"]) == 9
    assert {r["host"] for r in answer["results"]} == {f"h{i}" for i in range(1, 11)} - {"h2"}


def test_a_host_cut_off_is_listed_apart_and_sets_the_exit_status(make_farm: Callable[..., Farm],
                                                                testhosts: Any) -> None:
    run = testhosts(10)
    farm = make_farm(hosts_toml(run))
    with run.link_cut(run.host("h4")):
        result = farm.cli("exec", "h[1-10]", "-b", "-t", "2s", "--progress", "--", "echo", "ok", check=False)
    assert result.returncode == 255, result.stderr
    assert "h[1-3,5-10] (9)\n" in result.stdout and result.stdout.count("ok") == 1
    assert "unreachable: h4: no answer from" in result.stderr
    assert "done; waiting for h4" in result.stderr, "the progress line names the straggler"


def test_a_timeout_kills_the_slow_hosts_command(make_farm: Callable[..., Farm], testhosts: Any) -> None:
    run = testhosts(3)
    farm = make_farm(hosts_toml(run))
    slow = run.host("h2").address
    marker = "sleep 61.25"  # a command line nothing else runs, to look for afterwards
    command = f'case "$SSH_CONNECTION" in *" {slow} "*) {marker}; echo late;; *) echo quick;; esac'
    result = farm.cli("exec", "h[1-3]", "-u", "2s", "--json", "--", command, check=False)
    answer = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert result.returncode == 124
    assert answer["h2"]["timed_out"] and answer["h2"]["status"] == 124
    assert answer["h1"]["output"] == "quick\n" and answer["h3"]["status"] == 0

    def gone() -> bool:
        return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1

    wait_for(gone, 10, "the slow host's command was killed")


def _handshakes(run: Any) -> int:
    return sum((h.dir / "sshd.log").read_text().count("Accepted publickey") for h in run.hosts)


def test_exec_through_the_controller_uses_its_open_connections(make_farm: Callable[..., Farm],
                                                               testhosts: Any) -> None:
    run = testhosts(3)
    farm = make_farm(hosts_toml(run, '[groups]\nfront = ["h1", "h2"]\n'))
    farm.up()
    first = json.loads(farm.cli("exec", "@front", "--json", "--", "echo", "hello").stdout)
    assert [r["output"] for r in first["results"]] == ["hello\n", "hello\n"]
    before = _handshakes(run)
    again = farm.cli("exec", "h[1-3]", "-b", "--", "echo", "again")
    assert "h[1-3] (3)" in again.stdout
    assert _handshakes(run) == before, "no new SSH connection: the controller's were used"
    refused = farm.cli("exec", "h9", "--", "true", check=False)
    assert refused.returncode == 1 and "not hosts of this farm: h9" in refused.stderr
