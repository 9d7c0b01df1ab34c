"""Issue 3 through the controller: a client loop through a role's load balancer sees zero
failed requests while nodes are killed, stopped, scaled, replaced, and while the
controller itself is killed and restarted. Both engines."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Callable

import psutil
import pytest

from tests.integration.farmkit import Farm, free_port, wait_for
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.slow



def lb_farm(listen: str, count: int, engine: str, mode: str = "http") -> str:
    return textwrap.dedent(f"""\
        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = {count}
        stop_grace = "3s"
        lb = {{ listen = "{listen}", mode = "{mode}", engine = "{engine}", workers = 1, drain_timeout = "5s" }}

        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        fall = 2
        """)


@pytest.mark.parametrize("engine", ["builtin", "haproxy"])
def test_http_zero_failed_requests_through_every_kind_of_change(make_farm: Callable[..., Farm], engine: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(lb_farm(listen, 4, engine))
    farm.up()
    wait_for(lambda: farm.status()["roles"][0]["lb"] == listen, 10, "the role's load balancer")
    with Traffic(f"http://{listen}/") as traffic:
        traffic.wait_for_requests(50)

        # (a) kill -9 of a node
        victim = farm.nodes("web")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        farm.wait_ready("web", 4, timeout=30)
        traffic.wait_for_requests(50)

        # (b) a graceful stop (drained first)
        farm.cli("stop", farm.nodes("web")[1]["id"])
        farm.wait_ready("web", 3, timeout=30)
        farm.cli("scale", "web", "4")
        farm.wait_ready("web", 4, timeout=30)
        traffic.wait_for_requests(50)

        # (c) 4 -> 1 -> 4
        farm.cli("scale", "web", "1")
        farm.wait_ready("web", 1, timeout=30)
        traffic.wait_for_requests(50)
        farm.cli("scale", "web", "4")
        farm.wait_ready("web", 4, timeout=30)
        traffic.wait_for_requests(50)

        # (d) every node replaced, one by one
        for node in farm.nodes("web"):
            farm.cli("replace", node["id"])
            wait_for(lambda n=node: n["id"] not in {x["id"] for x in farm.nodes("web")}
                     and len(farm.ready_nodes("web")) == 4, 30, f"{node['id']} to be replaced")
        traffic.wait_for_requests(50)

        # (e) the controller killed with -9, then restarted
        os.kill(farm.controller_pid(), signal.SIGKILL)
        traffic.wait_for_requests(100)
        farm.up()
        traffic.wait_for_requests(50)
        traffic.stop()
    assert traffic.failures == [], f"{len(traffic.failures)} failed of {traffic.ok}: {traffic.failures[:5]}"
    assert traffic.ok > 500
    lb_processes = [p for p in farm.farm_processes() if "farmhand.lb" in " ".join(p.cmdline()) or "haproxy" in p.name()]
    assert lb_processes, "the load balancer runs in its own process(es)"


def test_tcp_mode_loses_only_connections_open_on_a_killed_node(make_farm: Callable[..., Farm]) -> None:
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(lb_farm(listen, 3, "builtin", mode="tcp"))
    farm.up()
    threads = 3
    with Traffic(f"http://{listen}/", threads=threads, keep_alive=False) as traffic:
        traffic.wait_for_requests(50)
        victim = farm.nodes("web")[0]
        stats = farm.status()["roles"][0]["lb_stats"] or {}
        open_on_victim = (stats.get("backends", {}).get(victim["id"], {}) or {}).get("active", 0)
        os.kill(victim["pid"], signal.SIGKILL)
        farm.wait_ready("web", 3, timeout=30)
        traffic.wait_for_requests(100)
        farm.cli("stop", farm.nodes("web")[1]["id"])
        farm.wait_ready("web", 2, timeout=30)
        traffic.wait_for_requests(100)
        traffic.stop()
    # each client thread has at most one connection open, so at most `threads` were open on
    # the killed node when it died; a graceful stop (drained) loses none.
    assert len(traffic.failures) <= threads, traffic.failures
    assert open_on_victim <= threads
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == psutil.STATUS_ZOMBIE


def test_a_load_balancer_that_dies_is_started_again(make_farm: Callable[..., Farm]) -> None:
    listen = f"127.0.0.1:{free_port()}"
    farm = make_farm(lb_farm(listen, 1, "builtin"))
    farm.up()
    engines = [p for p in farm.farm_processes() if "farmhand.lb.engine" in " ".join(p.cmdline())]
    assert engines
    for engine in engines:
        os.killpg(engine.pid, signal.SIGKILL)
    wait_for(lambda: sum(e["kind"] == "lb.ready" for e in farm.events()) == 2, 30, "the load balancer to be started again")
    with Traffic(f"http://{listen}/", threads=1) as traffic:
        traffic.wait_for_requests(20)
