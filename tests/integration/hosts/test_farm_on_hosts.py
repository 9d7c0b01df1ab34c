"""Issue 5 through the controller, on three test hosts (network namespaces with their own
sshd): spreading, a host whose link dies, migration and drain-host under a client loop,
and bad host entries that must not disturb the good ones."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.farmkit import APP, Farm, free_port, wait_for
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.slow


@pytest.fixture
def app_folder() -> Iterator[Path]:
    """The demo app where the test hosts' user can read it (pytest's tmp dirs are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="fh-app-"))
    folder.chmod(0o755)
    shutil.copy(APP, folder / "app.py")
    (folder / "app.py").chmod(0o644)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)



def host_table(name: str, fields: dict[str, Any]) -> str:
    lines = [f"[hosts.{name}]"]
    for key, value in fields.items():
        lines.append(f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def farm_on(hosts: dict[str, dict[str, Any]], app: Path, listen: str, count: int = 6) -> str:
    tables = "\n".join(host_table(name, fields) for name, fields in hosts.items())
    return tables + textwrap.dedent(f"""\
        [farm]
        host_timeout = "4s"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}} --host {{host}}"
        workdir = "{app}"
        count = {count}
        stop_grace = "3s"
        lb = {{ listen = "{listen}", mode = "http", workers = 1, drain_timeout = "5s", server_timeout = "3s" }}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "300ms"
        fall = 2
        """)


def per_host(farm: Farm) -> Counter[str]:
    return Counter(n["host"] for n in farm.ready_nodes("web"))


def test_spread_host_failure_migrate_and_drain(make_farm: Callable[..., Farm], three_hosts: Any, app_folder: Path) -> None:
    hosts = {h.name: h.spec_fields() for h in three_hosts.hosts}
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(farm_on(hosts, app_folder, listen))
    farm.up()
    assert per_host(farm) == {"h1": 2, "h2": 2, "h3": 2}, "6 nodes spread 2/2/2"
    with Traffic(f"http://{listen}/", threads=2) as traffic:
        traffic.wait_for_requests(50)

        # migrate and drain-host: zero failed requests
        node = next(n for n in farm.nodes("web") if n["host"] == "h1")
        farm.cli("migrate", node["id"], "--to", "h2")
        wait_for(lambda: node["id"] not in {n["id"] for n in farm.nodes("web")} and len(farm.ready_nodes("web")) == 6,
                 60, "the migration")
        assert per_host(farm) == {"h1": 1, "h2": 3, "h3": 2}
        traffic.wait_for_requests(50)
        farm.cli("drain-host", "h1")
        wait_for(lambda: per_host(farm)["h1"] == 0 and len(farm.ready_nodes("web")) == 6
                 and len(farm.nodes("web")) == 6, 60, "host h1 to be emptied")
        traffic.wait_for_requests(50)
        assert traffic.failures == [], traffic.failures
        farm.cli("undrain-host", "h1")

        # a host whose link dies: its nodes are placed on the others
        victim = three_hosts.host("h3")
        before = per_host(farm)["h3"]
        assert before >= 1
        cut_at = time.time()
        three_hosts.cut(victim)
        try:
            wait_for(lambda: per_host(farm)["h3"] == 0 and len(farm.ready_nodes("web")) == 6, 60,
                     "the nodes of h3 to be placed elsewhere")
            traffic.wait_for_requests(100)
            status = {h["name"]: h for h in farm.status()["hosts"]}
            assert status["h3"]["state"] == "down"
        finally:
            three_hosts.restore(victim)
        traffic.stop()
    # Only requests in flight on h3 when it died may fail: each client thread has at most one
    # request in flight, so at most `threads` of them; everything else was retried or balanced away.
    assert len(traffic.failures) <= traffic.threads, traffic.failures
    events = farm.events()
    assert any(e["kind"] == "host.down" and "h3" in e["message"] for e in events)
    # issue 10.5, measured (printed, not asserted: machines are noisy): from the cut to the
    # host declared down and to the last moved node serving, against host_timeout + a start
    down = next(e["ts"] for e in events if e["kind"] == "host.down" and "h3" in e["message"])
    served = max(e["ts"] for e in events if e["kind"] == "node.ready" and e["ts"] > cut_at)
    print(f"link cut: down after {down - cut_at:.1f}s, moved nodes serving after {served - cut_at:.1f}s "
          "(host_timeout 4s)")
    # the host comes back: the nodes it still ran from the old placement are stopped
    wait_for(lambda: any(e["kind"] == "node.orphan" for e in farm.events()), 30, "h3's stale nodes to be stopped")


def test_bad_host_entries_name_their_problem_and_do_not_block_the_rest(
        make_farm: Callable[..., Farm], three_hosts: Any, app_folder: Path, tmp_path: Path) -> None:
    good = three_hosts.host("h1")
    empty_known_hosts = tmp_path / "known_hosts.empty"
    empty_known_hosts.write_text("")
    hosts = {
        "good": good.spec_fields(),
        "noroute": good.spec_fields(address=three_hosts.unused_address),
        "wrongkey": three_hosts.host("h2").spec_fields(key_file=str(three_hosts.wrong_key_file)),
        "unknownkey": three_hosts.host("h3").spec_fields(known_hosts=str(empty_known_hosts)),
        "norights": three_hosts.host("h3").spec_fields(base_dir="/root/farmhand-forbidden"),
    }
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(farm_on(hosts, app_folder, listen, count=2))
    farm.up()
    assert {n["host"] for n in farm.ready_nodes("web")} == {"good"}
    expected = {
        "noroute": "cannot reach",
        "wrongkey": "authentication failed",
        "unknownkey": "not in known_hosts",
        "norights": "cannot use base directory",
    }
    rows = {}

    def reasons() -> bool:
        rows.update({row["name"]: row for row in farm.status()["hosts"]})
        return all(text in rows[name]["reason"] for name, text in expected.items())

    try:
        wait_for(reasons, 30, "every bad host to report its problem")
    except AssertionError:
        raise AssertionError({n: (r["state"], r["reason"]) for n, r in rows.items()}) from None
    assert rows["good"]["state"] == "up"
    with Traffic(f"http://{listen}/", threads=1) as traffic:
        traffic.wait_for_requests(30)
    assert traffic.failures == []
