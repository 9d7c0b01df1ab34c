"""A role's pre_stop hook (issue 16): it runs before a removed node's stop signal, while the
node still serves, for a command on its host or an HTTP call to it; a hook that hangs is cut
at its timeout and the node stops anyway."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable

import pytest

from tests.integration.farmkit import Farm, wait_for

pytestmark = pytest.mark.slow
FarmMaker = Callable[..., Farm]


def farm_with(hook: str) -> str:
    return textwrap.dedent(f"""\
        [farm]
        name = "hooks"

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = 2
        stop_grace = "5s"
        pre_stop = {{ {hook} }}

        [roles.web.health]
        path = "/health"
        interval = "200ms"
        """)


def stopped(farm: Farm, node: str) -> bool:
    return any(e["kind"] == "node.stopped" and e["node"] == node for e in farm.events())


def test_a_pre_stop_command_runs_while_the_node_still_serves_then_it_stops(make_farm: FarmMaker) -> None:
    probe = ("import sys, urllib.request; "
             "print(sys.argv[1], urllib.request.urlopen('http://127.0.0.1:' + sys.argv[2] + '/health').status)")
    farm = make_farm("")
    record = farm.folder / "retired.txt"
    # relative to the role's workdir (the farm's folder), with the role's env
    hook = f'command = "{sys.executable} -c \\"{probe}\\" {{node}} {{port}} >> $RECORD", timeout = "10s"'
    farm.file.write_text(farm_with(hook).replace("stop_grace", 'env = { RECORD = "retired.txt" }\nstop_grace'))
    farm.up()
    farm.cli("scale", "web", "1")
    removed = "web-2"
    wait_for(lambda: stopped(farm, removed), 30, f"{removed} to stop")
    assert record.read_text().split() == [removed, "200"], "the hook ran while the node still answered"
    kinds = [e["kind"] for e in farm.events() if e["node"] == removed]
    assert kinds.index("node.stopping") < kinds.index("node.pre_stop") < kinds.index("node.stopped")
    note = next(e["message"] for e in farm.events() if e["kind"] == "node.pre_stop")
    assert note.startswith(f"{removed} pre_stop: `") and note.endswith("done")


def test_an_http_pre_stop_calls_the_node(make_farm: FarmMaker) -> None:
    farm = make_farm(farm_with('http = "/health?leaving={node}", method = "GET", timeout = "5s"'))
    farm.up()
    farm.cli("stop", "web-1")
    wait_for(lambda: stopped(farm, "web-1"), 30, "web-1 to stop")
    note = next(e["message"] for e in farm.events() if e["kind"] == "node.pre_stop")
    assert note == "web-1 pre_stop: GET /health?leaving=web-1 answered 200"


def test_a_hook_that_hangs_is_cut_at_its_timeout_and_the_node_stops(make_farm: FarmMaker) -> None:
    farm = make_farm(farm_with('command = "sleep 60", timeout = "1s"'))
    farm.up()
    farm.cli("scale", "web", "1")
    wait_for(lambda: stopped(farm, "web-2"), 30, "web-2 to stop despite its hook")
    note = next(e["message"] for e in farm.events() if e["kind"] == "node.pre_stop")
    assert note == "web-2 pre_stop: no end within 1s; stopping it anyway"
    assert len(farm.ready_nodes("web")) == 1
