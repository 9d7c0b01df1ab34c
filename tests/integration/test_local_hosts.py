"""Placement, migration and host drains across several hosts, here two "local" hosts with
their own folders (the SSH hosts of tests/integration/hosts do the same over the network)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from tests.integration.farmkit import Farm, wait_for

pytestmark = pytest.mark.slow


def two_host_farm(folder_a: str, folder_b: str, count: int = 4) -> str:
    return textwrap.dedent(f"""\
        [hosts.a]
        driver = "local"
        base_dir = "{folder_a}"
        labels = {{ zone = "east" }}
        [hosts.b]
        driver = "local"
        base_dir = "{folder_b}"
        labels = {{ zone = "west" }}

        [roles.web]
        command = "python3 app.py --port {{port}} --node {{node}}"
        count = {count}
        [roles.web.health]
        type = "http"
        path = "/health"
        interval = "200ms"
        """)


def test_spread_migrate_and_drain_host(make_farm: Callable[..., Farm], tmp_path) -> None:
    farm = make_farm(two_host_farm(str(tmp_path / "a"), str(tmp_path / "b")))
    farm.up()
    hosts = sorted(n["host"] for n in farm.nodes("web"))
    assert hosts == ["a", "a", "b", "b"], "spread 2/2"

    victim = next(n for n in farm.nodes("web") if n["host"] == "a")
    farm.cli("migrate", victim["id"], "--to", "b")
    wait_for(lambda: victim["id"] not in {n["id"] for n in farm.nodes("web")}
             and len(farm.ready_nodes("web")) == 4, 30, "the migration to finish")
    assert sorted(n["host"] for n in farm.nodes("web")) == ["a", "b", "b", "b"]
    moved = f"{victim['id']}.2"  # the replacement keeps the slot, one generation on
    assert moved in {n["id"] for n in farm.nodes("web") if n["host"] == "b"}
    events = farm.events()
    ready_at = next(e["seq"] for e in events if e["kind"] == "node.ready" and e["node"] == moved)
    stop_at = next(e["seq"] for e in events if e["kind"] == "node.stopping" and e["node"] == victim["id"])
    assert ready_at < stop_at, "the new node must be ready before the old one stops"

    bad = farm.cli("migrate", moved, "--to", "nowhere", check=False)
    assert bad.returncode == 1 and "no host 'nowhere'" in bad.stderr

    farm.cli("drain-host", "a")
    wait_for(lambda: all(n["host"] == "b" for n in farm.nodes("web")) and len(farm.ready_nodes("web")) == 4,
             60, "every node to leave host a")
    listing = farm.cli("hosts").stdout
    assert "drained" in listing
    refused = farm.cli("migrate", moved, "--to", "a", check=False)
    assert refused.returncode == 1 and "host a is drained" in refused.stderr
    farm.cli("undrain-host", "a")
    farm.cli("scale", "web", "5")
    wait_for(lambda: any(n["host"] == "a" for n in farm.ready_nodes("web")), 30, "a new node on host a")
