"""The command line as a new user meets it (issue 11, and the CLI items of issue 10): every
test runs the real `farmhand` command in a real folder, against a real farm."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.farmkit import FARMHAND, Farm, wait_for

pytestmark = pytest.mark.slow

FarmMaker = Callable[..., Farm]


def small_farm(name: str = "t", count: int = 2, role_extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "{name}"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = {count}
        stop_grace = "3s"
        {role_extra}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        start_grace = "3s"
        """)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command from any folder (Farm.cli always runs in the farm's own folder)."""
    return subprocess.run([*FARMHAND, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def test_events_shows_every_event_up_to_n_and_exactly_the_newest_n(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    farm.up()
    everything = farm.events()
    assert len(everything) >= 4, "starting two nodes makes events"
    default = [json.loads(line) for line in farm.cli("events", "--json").stdout.splitlines()]
    assert len(default) >= len(everything), "fewer than -n stored: every one of them is shown"
    assert [e["seq"] for e in default[:len(everything)]] == [e["seq"] for e in everything]
    farm.cli("down")
    stored = farm.events()  # no controller: nothing new can come in between
    newest = [json.loads(line) for line in farm.cli("events", "--json", "-n", "2").stdout.splitlines()]
    assert newest == stored[-2:]
    assert farm.cli("events", "-n", "0").stdout == ""


def test_after_down_history_stays_readable_and_a_second_down_says_so(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    farm.up()
    assert "web-1 listening" in farm.cli("logs", "web-1").stdout
    farm.cli("down")

    again = farm.cli("down")
    assert again.returncode == 0 and "farm t is already down" in again.stdout
    events = farm.cli("events")
    assert "controller.stopped" in events.stdout and "node.started" in events.stdout
    assert "down" in events.stderr, "it says the events come from the store"
    assert "web-1 listening" in farm.cli("logs", "web-1").stdout
    unknown = farm.cli("logs", "web-99", check=False)
    assert unknown.returncode == 1 and "web-1" in unknown.stderr and "web-2" in unknown.stderr
    traversal = farm.cli("logs", "../farm.json", check=False)
    assert traversal.returncode != 0 and "not a node name" in traversal.stderr
    status = farm.cli("status", check=False)
    assert status.returncode == 1 and "farm t is down" in status.stderr and "farmhand up" in status.stderr


def test_a_second_up_says_the_farm_is_up_and_another_farm_file_is_refused(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    farm.up()
    pid = farm.controller_pid()
    log_size = farm.state.controller_log.stat().st_size
    token = farm.state.token_file.read_text().strip()

    for args in (("up", "--detach", "farm.toml"), ("up", "farm.toml"), ("up",)):
        again = farm.cli(*args, timeout=30)
        assert again.returncode == 0
        assert f"farm t is already up (pid {pid}, API {farm.api()[0]})" in again.stdout
        assert token not in again.stdout + again.stderr
    assert farm.state.controller_log.stat().st_size == log_size, "a second up must not write the running farm's log"

    (farm.folder / "other.toml").write_text(small_farm(name="other"))
    other = farm.cli("up", "--detach", "other.toml", check=False)
    assert other.returncode == 1
    assert "one farm per folder" in other.stderr and "farm t" in other.stderr and "other.toml" in other.stderr
    assert farm.controller_pid() == pid and farm.status()["farm"] == "t"


def test_logs_of_an_unknown_node_fail_naming_the_known_nodes(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    farm.up()
    result = farm.cli("logs", "web-99", check=False)
    assert result.returncode != 0
    assert "web-99" in result.stderr and "web-1" in result.stderr


def test_events_and_logs_follow_end_with_the_farm_and_say_so(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm(count=1))
    farm.up()
    outputs = {name: farm.folder / f"{name}.txt" for name in ("events", "logs")}
    followers = {}
    for name, argv in (("events", ["events", "-f"]), ("logs", ["logs", "web-1", "-f"])):
        with open(outputs[name], "w") as sink:
            followers[name] = subprocess.Popen([*FARMHAND, *argv], cwd=farm.folder, env=farm.env, stdout=sink,
                                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "node.ready" in outputs["events"].read_text(), 20, "the events follower's first lines")
        wait_for(lambda: "web-1 listening" in outputs["logs"].read_text(), 20, "the log follower's first lines")
        farm.cli("down")
        codes = {name: follower.wait(timeout=30) for name, follower in followers.items()}
    finally:
        for follower in followers.values():
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    for name, output in outputs.items():
        lines = output.read_text().strip().splitlines()
        assert codes[name] == 0, (name, lines)
        assert lines[-1] == "farm t stopped", name
        assert "incomplete" not in output.read_text().lower()


def test_down_without_a_controller_names_the_nodes_a_killed_one_left(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm(count=1))
    farm.up()
    node = farm.nodes("web")[0]
    controller = farm.controller_pid()
    os.kill(controller, signal.SIGKILL)
    wait_for(lambda: farm.state.controller_pid() is None, 20, "the controller's lock to be free")
    result = farm.cli("down", check=False)
    assert result.returncode == 1
    assert "ended without stopping" in result.stderr and node["id"] in result.stderr
    assert "farmhand up farm.toml" in result.stderr
    farm.up()  # adopts the node; the fixture's cleanup then stops the farm
    assert [n["pid"] for n in farm.nodes("web")] == [node["pid"]]


def test_the_farm_is_found_with_farm_before_or_after_the_verb_or_from_the_environment(make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    parent = farm.folder.parent
    started = run("up", "--detach", "--farm", "farm/farm.toml", cwd=parent)
    assert started.returncode == 0, started.stderr
    assert "`farmhand --farm farm/farm.toml status` from here, or `cd farm`" in started.stdout
    for args, env in ((("--farm", "farm/farm.toml", "status", "--json"), None),
                      (("status", "--json", "--farm", "farm/farm.toml"), None),
                      (("status", "--json"), {"FARMHAND_FILE": "farm/farm.toml"})):
        result = run(*args, cwd=parent, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert json.loads(result.stdout)["farm"] == "t"
    lost = run("status", cwd=parent)
    assert lost.returncode == 1
    assert "--farm FILE" in lost.stderr and "`farmhand --farm farm/farm.toml status`" in lost.stderr
    assert "`cd farm`" in lost.stderr


def _on_a_terminal(args: list[str], cwd: Path, timeout: float = 90) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal, as a person would; returns (exit code, output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_dashboard_link_reaches_the_terminal_and_never_a_log_and_state_files_are_private(
        make_farm: FarmMaker) -> None:
    farm = make_farm(small_farm())
    code, output = _on_a_terminal([*FARMHAND, "up", "--detach", "farm.toml"], farm.folder)
    assert code == 0, output
    token = farm.state.token_file.read_text().strip()
    url = farm.api()[0]
    assert f"dashboard: {url}/#token={token}" in output
    assert farm.cli("dashboard").stdout.strip() == f"{url}/#token={token}"
    farm.cli("down")
    piped = farm.cli("up", "--detach")  # not a terminal (a file, a pipe): no link, the way to get it
    assert token not in piped.stdout and "farmhand dashboard" in piped.stdout

    assert stat.S_IMODE(farm.state.path.stat().st_mode) == 0o700
    for path in farm.state.path.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        if path.is_dir():
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        elif path.is_file():
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
            if path != farm.state.token_file:
                assert token.encode() not in path.read_bytes(), f"the token is in {path}"
    assert (farm.state.logs / "web-1.log").is_file()


def test_version_help_and_the_messages_of_check_and_load(tmp_path: Path) -> None:
    assert run("--version", cwd=tmp_path).stdout.strip().startswith("farmhand ")
    assert "Seconds to wait" in run("down", "--help", cwd=tmp_path).stdout
    assert "JSON" in run("hosts", "--help", cwd=tmp_path).stdout
    assert "--farm" in run("status", "--help", cwd=tmp_path).stdout

    nothing = run("check", cwd=tmp_path)
    assert nothing.returncode == 2 and "no farm file given" in nothing.stderr and "farm.toml" in nothing.stderr
    (tmp_path / "farm.toml").write_text('[farm]\nname = "x"\n[roles.web]\ncommand = "true"\ncount = "many"\n')
    broken = run("check", cwd=tmp_path)
    assert broken.returncode == 2
    assert "roles.web.count" in broken.stderr and "farm.toml" in broken.stderr
    assert broken.stderr.strip().splitlines()[-1].endswith("problem(s)")
    assert "nothing was changed" not in broken.stderr
    refused = run("up", cwd=tmp_path)
    assert refused.returncode == 2 and "nothing was started" in refused.stderr
    assert not (tmp_path / ".farmhand").exists()

    bare = run("load", "127.0.0.1:9", "--duration", "1s", cwd=tmp_path)
    assert bare.returncode == 2 and "a URL needs http:// (or https://)" in bare.stderr
    assert "UnsupportedProtocol" not in bare.stderr


def test_up_detach_fails_with_the_reason_when_a_load_balancer_cannot_listen(make_farm: FarmMaker) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        farm = make_farm(small_farm(count=1, role_extra=f'lb = {{ listen = "127.0.0.1:{port}", mode = "http" }}'))
        result = farm.cli("up", "--detach", "--timeout", "60", check=False)
    assert result.returncode != 0, result.stdout
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr, result.stderr
    assert "token=" not in result.stderr and "Ctrl-C" not in result.stderr
