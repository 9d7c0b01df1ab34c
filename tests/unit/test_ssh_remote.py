"""The SSH driver's remote scripts and parsers, without a host (the scripts themselves run in
tests/integration/hosts)."""

from __future__ import annotations

import pytest

from farmhand.drivers import ssh_remote as remote
from farmhand.drivers.base import NodeLaunch, RunningNode

FACTS = remote.HostFacts(base_dir="/srv/farm", clock_ticks=100, boot_time=1_700_000_000.0, page_size=4096, uid=1000)


@pytest.mark.parametrize(
    ("base_dir", "expression"),
    [
        (None, '"$HOME"/.farmhand/my-farm'),
        ("~", '"$HOME"'),
        ("~/farms/a b", '"$HOME"/\'farms/a b\''),
        ("/srv/farm", "/srv/farm"),
    ],
)
def test_base_dir_defaults_to_the_remote_home(base_dir: str | None, expression: str) -> None:
    assert remote.base_dir_expression(base_dir, "my-farm") == expression


@pytest.mark.parametrize("node_id", ["../etc", "a b", "x;rm -rf /", "", ".hidden", "a\"b"])
def test_unsafe_node_ids_never_reach_a_script(node_id: str) -> None:
    with pytest.raises(remote.RemoteScriptError):
        remote.start_script(FACTS, NodeLaunch(node_id, "web", "true"), "true", {})
    with pytest.raises(remote.RemoteScriptError):
        remote.read_log_script(FACTS, node_id, 0, 10)


def test_bad_environment_names_and_signals_are_refused() -> None:
    with pytest.raises(remote.RemoteScriptError):
        remote.exec_script("true", 1, {"A=B": "x"})
    with pytest.raises(remote.RemoteScriptError):
        remote.signal_script(FACTS, RunningNode("n", 1, 0.0), "TERM; reboot")


def test_exec_never_passes_a_zero_timeout() -> None:
    assert " 0.001 " in remote.exec_script("true", 0, None)


def test_parse_list_reads_alive_and_dead_nodes() -> None:
    nodes = remote.parse_list("web-1 101 1700000100.250 1\nweb-2 102 1700000101.000 0\ngarbage\n")
    assert nodes == {
        "web-1": RunningNode("web-1", 101, 1700000100.25, True),
        "web-2": RunningNode("web-2", 102, 1700000101.0, False),
    }


def test_parse_ports_decodes_hex_ports_and_ranges() -> None:
    table = remote.parse_ports("range 32768\t60999\nunprivileged 1024\nused 0016\nused 1F90\n")
    assert table.used == frozenset({22, 8080})
    assert table.ephemeral == (32768, 60999)
    assert table.unprivileged_start == 1024


@pytest.mark.parametrize(("online", "count"), [("0-1\n", 2), ("0", 1), ("0-3,6,8-9", 7), ("", 1)])
def test_count_cpus(online: str, count: int) -> None:
    assert remote.count_cpus(online) == count


def test_hello_failure_names_the_directory_and_the_first_reason() -> None:
    output = "/srv/x/base\nmkdir: cannot create directory '/srv/x/base': Permission denied\nmkdir: again\n"
    assert remote.hello_failure(output) == (
        "/srv/x/base",
        "mkdir: cannot create directory '/srv/x/base': Permission denied",
    )


def test_put_file_script_keeps_the_temporary_file_beside_the_target() -> None:
    script = remote.put_file_script("/etc/app/conf.toml", 0o640, "ab12")
    assert "/etc/app/.conf.toml.tmpab12" in script
    assert "chmod 640" in script
    with pytest.raises(remote.RemoteScriptError):
        remote.put_file_script("/etc/app/", 0o644, "ab12")
