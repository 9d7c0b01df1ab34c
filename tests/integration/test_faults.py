"""Faults that once left a farm half-changed or said "up" while it was not (issue 10: 1, 4, 21):
each refused with its reason, and nothing that ran before stops running."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest

from tests.integration.farmkit import Farm, free_port, wait_for

pytestmark = pytest.mark.slow
FarmMaker = Callable[..., Farm]


def web_farm(count: int = 2, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "faults"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = {count}
        stop_grace = "3s"

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        """) + extra


@pytest.fixture
def squatted_port() -> Iterator[int]:
    """A loopback port another program listens on, for the whole test."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def test_up_fails_with_the_reason_when_a_balancer_cannot_listen(make_farm: FarmMaker, squatted_port: int) -> None:
    farm = make_farm(web_farm(extra=f'\n[roles.web.lb]\nlisten = "127.0.0.1:{squatted_port}"\n'))
    result = farm.cli("up", "--detach", "--timeout", "30", check=False)
    assert result.returncode != 0, result.stdout
    assert f"load balancer on 127.0.0.1:{squatted_port} failed" in result.stderr, result.stderr
    assert "is up" not in result.stdout
    assert not [p for p in farm.farm_processes() if "app.py" in " ".join(p.cmdline())], "no node may start"


def test_a_reload_whose_balancer_cannot_listen_is_refused_and_changes_nothing(
        make_farm: FarmMaker, squatted_port: int) -> None:
    farm = make_farm(web_farm())
    farm.up()
    before = {n["id"]: n["pid"] for n in farm.nodes("web")}
    farm.file.write_text(web_farm(count=3, extra=f'\n[roles.web.lb]\nlisten = "127.0.0.1:{squatted_port}"\n'))
    result = farm.cli("reload", check=False)
    assert result.returncode != 0
    assert "reload refused, the farm runs on unchanged" in result.stderr
    assert f"127.0.0.1:{squatted_port}" in result.stderr
    status = farm.status()
    assert {n["id"]: n["pid"] for n in status["nodes"]} == before, "every node still known, none replaced"
    assert status["roles"][0]["lb"] is None and status["roles"][0]["wanted"] == 2, "the old spec is in force"
    assert [h["name"] for h in status["hosts"]] == ["local"]
    # and the farm still obeys: the old file works again
    farm.file.write_text(web_farm(count=3))
    assert "count" in farm.cli("reload").stdout
    farm.wait_ready("web", 3)


def test_a_killed_controller_is_remembered_and_adopted_nodes_die_in_the_same_words(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=1, extra=f'\n[roles.web.lb]\nlisten = "127.0.0.1:{free_port()}"\n'))
    farm.up()
    os.kill(farm.controller_pid(), signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(farm.controller_pid())
             or psutil.Process(farm.controller_pid()).status() == psutil.STATUS_ZOMBIE, 10, "the controller to die")
    farm.up()
    lost = [e for e in farm.events() if e["kind"] == "controller.lost"]
    assert len(lost) == 1 and "ended without stopping the farm" in lost[0]["message"]
    assert any(e["kind"] == "lb.adopted" for e in farm.events()), "a running balancer is adopted, not started"
    victim = farm.nodes("web")[0]
    os.kill(victim["pid"], signal.SIGKILL)  # adopted: not this controller's child
    wait_for(lambda: any(e["kind"] == "node.failed" and e["node"] == victim["id"] for e in farm.events()),
             30, "the failure")
    failed = next(e for e in farm.events() if e["kind"] == "node.failed" and e["node"] == victim["id"])
    assert f"{victim['id']} exited (exit status unknown)" in failed["message"]
    farm.cli("down")
    assert not any(e["kind"] == "controller.lost" for e in farm.events()[-3:])


def test_a_balancer_workers_death_is_an_event_and_its_totals_never_go_back(make_farm: FarmMaker) -> None:
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(web_farm(count=2, extra=f'\n[roles.web.lb]\nlisten = "{listen}"\nworkers = 2\n'))
    farm.up()
    for _ in range(50):
        assert httpx.get(f"http://{listen}/", timeout=10, trust_env=False).status_code == 200
    wait_for(lambda: requests_total(farm) >= 50, 20, "the balancer to count the requests")
    before = requests_total(farm)
    engine = next(p for p in farm.farm_processes() if "farmhand.lb.engine" in " ".join(p.cmdline()))
    worker = engine.children()[0]
    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: any(e["kind"] == "lb.worker_died" for e in farm.events()), 30, "the worker's death event")
    died = next(e for e in farm.events() if e["kind"] == "lb.worker_died")
    assert f"(pid {worker.pid}) was killed by signal 9" in died["message"] and "started it again" in died["message"]
    wait_for(lambda: httpx.get(f"http://{listen}/", timeout=10, trust_env=False).status_code == 200, 20,
             "the balancer to serve again")
    assert requests_total(farm) >= before, "the dead worker's counts are kept"


def requests_total(farm: Farm) -> int:
    role = farm.status()["roles"][0]
    listeners = (role.get("lb_stats") or {}).get("listeners") or {}
    return sum(int(c.get("requests", 0)) for c in listeners.values())
