"""A cold `farmhand exec` over worker processes (``fleet.workers``): every host answers once
through two workers (the CLI and one forked), and a forked worker killed mid-run has its own
hosts reported failed while the CLI's hosts answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import FARMHAND, Farm, wait_for
from tests.integration.fleet.conftest import hosts_toml

pytestmark = pytest.mark.slow

HOSTS = 12


def _forks(pid: int) -> list[int]:
    """``pid``'s children that are forks of it (same command line), not programs it runs."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [child for child in children if Path(f"/proc/{child}/cmdline").read_bytes() == own]


def test_two_workers_answer_every_host_once(make_farm: Callable[..., Farm], testhosts: Any) -> None:
    run = testhosts(HOSTS)
    farm = make_farm(hosts_toml(run))
    farm.env["FARMHAND_EXEC_WORKERS"] = "2"
    streamed = farm.cli("exec", f"h[1-{HOSTS}]", "--", "echo", "hi")
    assert sorted(streamed.stdout.splitlines()) == sorted(f"h{i}: hi" for i in range(1, HOSTS + 1))
    gathered = farm.cli("exec", f"h[1-{HOSTS}]", "-b", "--", "uname", "-s")
    assert f"h[1-{HOSTS}] ({HOSTS})\n" in gathered.stdout and gathered.stdout.count("Linux") == 1
    answer = json.loads(farm.cli("exec", f"h[1-{HOSTS}]", "--json", "--", "exit 3", check=False).stdout)
    assert answer["status"] == 3
    assert sorted(r["host"] for r in answer["results"]) == sorted(f"h{i}" for i in range(1, HOSTS + 1))


def test_a_killed_worker_fails_its_hosts_only(make_farm: Callable[..., Farm], testhosts: Any) -> None:
    run = testhosts(HOSTS)
    farm = make_farm(hosts_toml(run))
    shared = Path(tempfile.mkdtemp(prefix="fleet-workers-"))
    shared.chmod(0o777)  # the hosts' login user marks its start here and waits for "go"
    go = shared / "go"
    command = f'set -- $SSH_CONNECTION; touch {shared}/$3; while [ ! -e {go} ]; do sleep 0.05; done; echo ok'
    cli = subprocess.Popen([*FARMHAND, "exec", f"h[1-{HOSTS}]", "--json", "-u", "60s", "--", command],
                           cwd=farm.folder, env={**farm.env, "FARMHAND_EXEC_WORKERS": "2"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = wait_for(lambda: _forks(cli.pid), 30, "the forked exec worker (the CLI is the other)")
        wait_for(lambda: len([p for p in shared.iterdir() if p != go]) == HOSTS, 60,
                 "every host running its command")
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: workers[0] not in _forks(cli.pid), 10, "the killed worker reaped")
        go.touch()
        out, err = cli.communicate(timeout=60)
    finally:
        go.touch()
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        shutil.rmtree(shared, ignore_errors=True)
    answer = json.loads(out)
    results = {r["host"]: r for r in answer["results"]}
    assert len(answer["results"]) == HOSTS and set(results) == {f"h{i}" for i in range(1, HOSTS + 1)}
    failed = {h for h, r in results.items() if r.get("error")}
    answered = {h for h, r in results.items() if r["output"] == "ok\n" and r["status"] == 0}
    assert failed and answered and failed | answered == set(results), answer
    for host in failed:
        assert "exec worker" in results[host]["error"] and "killed by SIGKILL" in results[host]["error"], results[host]
    assert answer["status"] == 255, err
