"""`farmhand deploy ROLE` on test hosts, under a client loop through the role's balancer.

A release is a folder with the node's app and ``release.txt``; each node answers with the
release it started in. Deploying v2 replaces every node one at a time with zero failed
requests; then v3, whose nodes in slot 2 fail their health check, is stopped and rolled
back: every host's ``current`` points at v2 again, the node already moved onto v3 is moved
back, the role serves v2 only, and the command exits non-zero. The test hosts share this
machine's file system, so DEST holds ``{host}`` (each host's own base directory)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.farmkit import Farm, free_port
from tests.integration.fleet.conftest import hosts_toml
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.slow
APP = Path(__file__).with_name("deploy_app.py")


@pytest.fixture
def source() -> Iterator[Path]:
    """The release's source, where rsync (run by the controller) reads it."""
    folder = Path(tempfile.mkdtemp(prefix="fh-deploy-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _release(folder: Path, version: str, unhealthy_slots: tuple[int, ...] = ()) -> None:
    for old in folder.glob("unhealthy*"):
        old.unlink()
    shutil.copy(APP, folder / "app.py")
    (folder / "release.txt").write_text(f"{version}\n")
    for slot in unhealthy_slots:
        (folder / f"unhealthy-{slot}").write_text("")
    for path in folder.iterdir():
        path.chmod(0o644)


def _farm_toml(run: Any, source: Path, dest: str, listen: str) -> str:
    return hosts_toml(run, textwrap.dedent(f"""
        [farm]
        restart_backoff = "500ms"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = 3
        stop_grace = "3s"
        lb = {{ listen = "{listen}", mode = "http", workers = 1, drain_timeout = "5s", server_timeout = "5s" }}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "300ms"
        fall = 2
        start_grace = "5s"  # a healthy new node must not be taken for a failing one on a busy machine

        [roles.web.deploy]
        source = "{source}"
        dest = "{dest}"
        keep = 3
        """))


def _served(listen: str, rounds: int = 12) -> set[tuple[str, str]]:
    """(node, release) pairs answering through the balancer (round robin: every node answers)."""
    seen = set()
    with httpx.Client(timeout=10, trust_env=False) as client:
        for _ in range(rounds):
            words = client.get(f"http://{listen}/").text.split()
            seen.add((words[2], words[4]))
    return seen


def _current(run: Any, host: str) -> str:
    link = run.dir / host / "base" / "web" / "current"
    return os.readlink(link)


def _release_of(run: Any, host: str) -> str:
    return (run.dir / host / "base" / "web" / "current" / "release.txt").read_text().strip()


def test_deploy_under_traffic_then_a_failing_release_rolls_back(make_farm: Callable[..., Farm], testhosts: Any,
                                                                 source: Path) -> None:
    run = testhosts(2)
    hosts = [h.name for h in run.hosts]
    listen = f"127.0.0.1:{free_port()}"
    dest = f"{run.dir}/{{host}}/base/web"
    farm = make_farm(_farm_toml(run, source, dest, listen))
    _release(source, "v1")
    farm.cli("sync", "h[1-2]", str(source), dest)  # the first release, before the nodes start
    farm.up()
    farm.wait_ready("web", 3, timeout=60)
    assert {release for _, release in _served(listen)} == {"v1"}
    v1_links = {h: _current(run, h) for h in hosts}

    _release(source, "v2")
    dry = farm.cli("deploy", "web", "--dry-run")
    assert "release.txt" in dry.stdout and "nodes to replace, in order: web-1, web-2, web-3" in dry.stdout, dry.stdout
    assert {h: _current(run, h) for h in hosts} == v1_links, "a dry run changes nothing"

    with Traffic(f"http://{listen}/", threads=2) as traffic:
        traffic.wait_for_requests(30)

        # v2: every node replaced one at a time, no failed request
        _release(source, "v2")
        before = {n["id"] for n in farm.nodes("web")}
        deployed = farm.cli("deploy", "web", timeout=300)
        assert "runs release" in deployed.stdout, deployed.stdout
        traffic.wait_for_requests(30)
        nodes = farm.wait_ready("web", 3, timeout=60)
        assert not before & {n["id"] for n in nodes}, "every node was replaced"
        assert {_release_of(run, h) for h in hosts} == {"v2"}
        v2_links = {h: _current(run, h) for h in hosts}
        served = _served(listen)
        assert {release for _, release in served} == {"v2"}, served
        assert {node for node, _ in served} == {n["id"] for n in nodes}, "every node answers with v2"
        assert traffic.failures == [], traffic.failures

        # v3 fails its check in slot 2: the deploy stops, hosts and the moved node go back to v2
        _release(source, "v3", unhealthy_slots=(2,))
        failed = farm.cli("deploy", "web", "--json", check=False, timeout=300)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        report = json.loads(failed.stdout)
        assert report["state"] == "rolled back", report
        assert "web-2" in report["message"] and "rolled back" in report["message"], report["message"]
        assert len(report["moved"]) == 1 and report["moved"][0]["from"].startswith("web-1"), report
        assert [m["from"] for m in report["moved_back"]] == [report["moved"][0]["to"]], report
        assert {h: _current(run, h) for h in hosts} == v2_links, "current points at v2 again on every host"
        nodes = farm.wait_ready("web", 3, timeout=60)
        served = _served(listen)
        assert {release for _, release in served} == {"v2"}, served
        assert {node for node, _ in served} == {n["id"] for n in nodes}
        traffic.wait_for_requests(30)
        traffic.stop()
    assert traffic.failures == [], traffic.failures
    kinds = [e["kind"] for e in farm.events() if e.get("role") == "web"]
    for kind in ("deploy.started", "deploy.synced", "deploy.moved", "deploy.done", "deploy.failed",
                 "deploy.rollback", "deploy.moved_back", "deploy.rolled_back"):
        assert kind in kinds, kind


def test_a_host_whose_after_fails_stops_the_deploy_before_any_node_moves(make_farm: Callable[..., Farm],
                                                                          testhosts: Any, source: Path) -> None:
    run = testhosts(2)
    hosts = [h.name for h in run.hosts]
    listen = f"127.0.0.1:{free_port()}"
    dest = f"{run.dir}/{{host}}/base/web"
    failing = run.host("h2").address
    after = f'case "$SSH_CONNECTION" in *" {failing} "*) echo cache clear failed; exit 7;; esac'
    farm = make_farm(_farm_toml(run, source, dest, listen).replace("keep = 3", f"keep = 3\nafter = '{after}'"))
    _release(source, "v1")
    farm.cli("sync", "h[1-2]", str(source), dest)
    farm.up()
    before = {n["id"] for n in farm.wait_ready("web", 3, timeout=60)}
    v1_links = {h: _current(run, h) for h in hosts}

    _release(source, "v2")
    failed = farm.cli("deploy", "web", check=False, timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "h2: after failed (exit 7)" in failed.stderr and "no node was moved" in failed.stderr, failed.stderr
    assert {h: _current(run, h) for h in hosts} == v1_links, "h1 switched back, h2 never switched"
    assert {n["id"] for n in farm.nodes("web")} == before, "no node was replaced"
    assert {release for _, release in _served(listen)} == {"v1"}
