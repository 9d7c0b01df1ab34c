"""The core's promises, on real processes: healing, backoff, adoption after kill -9,
reload, ports, the CLI and the API's token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import httpx
import psutil
import pytest

from tests.integration.farmkit import Farm, wait_for

pytestmark = pytest.mark.slow

FarmMaker = Callable[..., Farm]


def web_farm(count: int = 3, extra: str = "", role_extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "t"
        restart_backoff = "200ms"
        restart_backoff_max = "2s"
        {extra}

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = {count}
        stop_grace = "3s"
        {role_extra}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        timeout = "500ms"
        fall = 2
        start_grace = "3s"
        """)


def get(port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5, trust_env=False)


def test_up_status_and_nodes_answer(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm())
    farm.up()
    status = farm.status()
    assert status["farm"] == "t"
    assert {"name": "web", "wanted": 3, "running": 3, "healthy": 3, "lb": None}.items() <= status["roles"][0].items()
    assert status["hosts"] == [status["hosts"][0]] and status["hosts"][0]["name"] == "local"
    assert {"name", "driver", "state"} <= status["hosts"][0].keys()
    ports = [n["port"] for n in status["nodes"]]
    assert len(set(ports)) == 3, "two nodes got the same port"
    for node in status["nodes"]:
        assert {"id", "role", "host", "pid", "port", "state", "health", "started_at", "restarts"} <= node.keys()
        assert node["health"] == "healthy"
        assert get(node["port"]).text == f"hello from {node['id']}\n"
        assert os.getsid(node["pid"]) == node["pid"], "a node must run in its own session"
        assert (farm.state.logs / f"{node['id']}.log").exists()
    human = farm.cli("status").stdout
    assert "web-1" in human and "healthy" in human


def test_a_node_that_exits_is_replaced_and_the_event_says_why(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=2))
    farm.up()
    victim = farm.nodes("web")[0]
    get(victim["port"], "/crash")

    def restarted() -> dict | None:
        node = next(n for n in farm.nodes("web") if n["id"] == victim["id"])
        return node if node["restarts"] >= 1 and node["state"] == "running" and node["pid"] != victim["pid"] else None

    wait_for(restarted, 30, "the crashed node to run again")
    failed = [e for e in farm.events() if e["kind"] == "node.failed" and e["node"] == victim["id"]]
    assert failed and "exited with code 3" in failed[0]["message"]


def test_a_node_failing_its_health_check_is_replaced(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=2))
    farm.up()
    victim = farm.nodes("web")[0]
    (farm.folder / f"sick-{victim['id']}").touch()  # the app answers 503 on /health from now on
    wait_for(lambda: any(e["kind"] == "node.unhealthy" and e["node"] == victim["id"] for e in farm.events()),
             30, "the unhealthy event")
    (farm.folder / f"sick-{victim['id']}").unlink()
    # at least one restart, then healthy: under load the new process may fail a check too
    wait_for(lambda: any(n["id"] == victim["id"] and n["restarts"] >= 1 and n["state"] == "running"
                         for n in farm.nodes("web")), 30, "the sick node to be restarted and healthy")
    unhealthy = next(e for e in farm.events() if e["kind"] == "node.unhealthy")
    assert "503" in unhealthy["message"]
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == psutil.STATUS_ZOMBIE


def test_a_crash_looping_role_backs_off_exponentially(make_farm: FarmMaker) -> None:
    farm = make_farm(textwrap.dedent("""\
        [farm]
        restart_backoff = "200ms"
        restart_backoff_max = "800ms"
        [roles.broken]
        command = "python3 -c 'import sys; print(\\"boom\\"); sys.exit(7)'"
        count = 1
        port = "none"
        """))
    farm.cli("up", "--detach", "--timeout", "3", check=False)  # never ready: it fails at once
    wait_for(lambda: sum(e["kind"] == "node.failed" for e in farm.events()) >= 5, 30, "five failures")
    backoffs = [e["message"] for e in farm.events() if e["kind"] == "role.backoff"]
    assert "next start in 200ms" in backoffs[0]
    assert "next start in 400ms" in backoffs[1]
    assert all("800ms" in m for m in backoffs[3:]), "the backoff must be capped"
    failed = next(e for e in farm.events() if e["kind"] == "node.failed")
    assert "exited with code 7" in failed["message"] and "boom" in failed["message"]
    role = farm.status()["roles"][0]
    assert role["failures"] >= 3


def test_kill_9_of_the_controller_leaves_nodes_serving_and_up_adopts_them(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=2))
    farm.up()
    before = {n["id"]: n["pid"] for n in farm.nodes("web")}
    os.kill(farm.controller_pid(), signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(farm.controller_pid()) or
             psutil.Process(farm.controller_pid()).status() == psutil.STATUS_ZOMBIE, 10, "the controller to die")
    for node_id, pid in before.items():
        assert psutil.pid_exists(pid), f"{node_id} died with the controller"
    farm.up()
    after = {n["id"]: n["pid"] for n in farm.nodes("web")}
    assert after == before, "the restarted controller must adopt the same processes"
    app_processes = [p for p in farm.farm_processes() if "app.py" in " ".join(p.cmdline())]
    assert len(app_processes) == 2, "no duplicates, no orphans"
    # and it goes on healing
    victim = farm.nodes("web")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: any(n["id"] == victim["id"] and n["restarts"] >= 1 and n["state"] == "running"
                         for n in farm.nodes("web")), 30, "the killed node to be restarted")


def test_reload_scales_rolls_out_one_at_a_time_and_refuses_a_broken_file(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=2))
    farm.up()
    farm.file.write_text(web_farm(count=3))
    assert "count" in farm.cli("reload").stdout
    farm.wait_ready("web", 3)
    original = {n["id"] for n in farm.nodes("web")}

    farm.file.write_text(web_farm(count=3, role_extra='env = { GREETING = "v2" }'))
    farm.cli("reload")
    wait_for(lambda: not original & {n["id"] for n in farm.nodes("web")} and len(farm.ready_nodes("web")) == 3,
             60, "every node to be replaced")
    # one at a time: each old node stopped only after a new one was ready, so ready >= 3 throughout
    ready = 3
    for event in farm.events():
        if event["kind"] == "node.ready" and event["node"] not in original:
            ready += 1
        elif event["kind"] == "node.stopping" and event["node"] in original:
            ready -= 1
            assert ready >= 3, "an old node stopped before its replacement was ready"

    farm.file.write_text(web_farm(count=3).replace("interval = \"200ms\"", "interval = \"5x\""))
    result = farm.cli("reload", check=False)
    assert result.returncode != 0
    assert 'roles.web.health.interval: "5x" is not a duration' in result.stderr
    assert len(farm.ready_nodes("web")) == 3


def test_sighup_reloads(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=1))
    farm.up()
    farm.file.write_text(web_farm(count=2))
    os.kill(farm.controller_pid(), signal.SIGHUP)
    farm.wait_ready("web", 2)


def test_a_fixed_port_that_is_taken_is_a_clear_error(make_farm: FarmMaker) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        farm = make_farm(web_farm(count=1, role_extra=f"port = {port}"))
        farm.cli("up", "--detach", "--timeout", "3", check=False)
        wait_for(lambda: any(e["kind"] == "node.start_failed" for e in farm.events()), 20, "the start failure")
        failure = next(e for e in farm.events() if e["kind"] == "node.start_failed")
        assert f"port {port} is already in use" in failure["message"]


def test_scale_stop_replace_and_down(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=2))
    farm.up()
    farm.cli("scale", "web", "3")
    farm.wait_ready("web", 3)
    farm.cli("stop", "web-1")
    wait_for(lambda: {n["id"] for n in farm.nodes("web")} == {"web-2", "web-3"}, 30, "web-1 to stop for good")
    farm.cli("replace", "web-2")
    wait_for(lambda: {n["id"] for n in farm.ready_nodes("web")} == {"web-3", "web-2.2"}
             and len(farm.nodes("web")) == 2, 30, "web-2 to be replaced by web-2.2")
    bad = farm.cli("scale", "nope", "2", check=False)
    assert bad.returncode == 1 and "no role 'nope'" in bad.stderr
    log = farm.cli("logs", "web-3").stdout
    assert "web-3 listening" in log
    pids = [n["pid"] for n in farm.nodes()]
    farm.cli("down")
    assert not farm.state.api_file.exists()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_changes_need_the_token_and_reads_do_not(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=1))
    farm.up()
    url, _ = farm.api()
    assert httpx.get(url + "/api/status", trust_env=False).status_code == 200
    assert farm.post("/api/roles/web/scale", {"count": 2}, token="").status_code == 401
    wrong = farm.post("/api/roles/web/scale", {"count": 2}, token="wrong")
    assert wrong.status_code == 403 and "wrong token" in wrong.json()["error"]
    assert farm.post("/api/roles/web/scale", {"count": 2}).status_code == 200
    assert httpx.get(url + "/docs", trust_env=False).status_code == 200


def test_check_reports_every_problem_with_file_line_and_key(tmp_path) -> None:
    farm_file = tmp_path / "farm.toml"
    farm_file.write_text(textwrap.dedent("""\
        [roles.web]
        command = "x {port}"
        cuont = 3

        [roles.web.health]
        interval = "5x"
        """))
    result = subprocess.run([sys.executable, "-m", "farmhand", "check", str(farm_file)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{farm_file}:6: roles.web.health.interval: \"5x\" is not a duration" in result.stderr
    assert f"{farm_file}:3: roles.web.cuont: unknown key (did you mean 'count'?)" in result.stderr


def test_events_and_logs_follow(make_farm: FarmMaker) -> None:
    farm = make_farm(web_farm(count=1))
    farm.up()
    events = subprocess.Popen([sys.executable, "-m", "farmhand", "events", "-f", "-n", "0"], cwd=farm.folder,
                              stdout=subprocess.PIPE, text=True)
    logs = subprocess.Popen([sys.executable, "-m", "farmhand", "logs", "web-1", "-f"], cwd=farm.folder,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "web-1 listening" in (logs.stdout.readline() if logs.stdout else "")
        farm.cli("scale", "web", "2")
        assert events.stdout is not None
        lines = [events.stdout.readline() for _ in range(2)]
        assert "role.scaled" in lines[0] and "web: 1 -> 2" in lines[0]
        assert "node.created" in lines[1] and "web-2" in lines[1]
    finally:
        events.kill()
        logs.kill()
        events.wait()
        logs.wait()


def test_a_node_that_cannot_be_placed_is_reported_once(make_farm: FarmMaker) -> None:
    hosts = ('[hosts.a]\ndriver = "local"\ncapacity = { nodes = 1 }\n'
             '[hosts.b]\ndriver = "local"\ncapacity = { nodes = 1 }')
    farm = make_farm(web_farm(count=2, extra=hosts))
    farm.up()
    farm.cli("drain-host", "a")  # its node has nowhere to go: b is full
    wait_for(lambda: any(e["kind"] == "node.unplaceable" for e in farm.events()), 20, "the unplaceable note")
    wait_for(lambda: farm.status()["time"] > farm.events()[-1]["ts"] + 2, 30, "two seconds of ticks")
    notes = [e for e in farm.events() if e["kind"] == "node.unplaceable"]
    assert len(notes) == 1 and "b is full (1 nodes)" in notes[0]["message"] and "a is drained" in notes[0]["message"]
    refused = farm.cli("scale", "web", "3", check=False)
    assert refused.returncode == 1 and "3 nodes do not fit: the hosts hold at most 2" in refused.stderr
