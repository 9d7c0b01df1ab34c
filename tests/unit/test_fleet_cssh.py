"""`farmhand cssh`'s plan, without tmux or hosts: the ssh argv, the panes, the tmux commands."""

from __future__ import annotations

import shlex

import pytest

from farmhand.errors import RequestError
from farmhand.fleet import cssh
from farmhand.spec.models import HostSpec

PINNED = HostSpec(driver="ssh", address="10.0.0.1", port=2222, user="ops", key_file="/k/id",
                  host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpinned")
LISTED = HostSpec(driver="ssh", address="10.0.0.2", known_hosts="/k/known_hosts")


def _options(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-o")


def test_ssh_checks_host_keys_strictly_against_the_farm_files_keys_only() -> None:
    argv = cssh.ssh_argv(PINNED, "/run/pins", 10)
    options = _options(argv)
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["UserKnownHostsFile"] == "/run/pins"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["IdentitiesOnly"] == "yes"
    assert argv[:3] == ["ssh", "-F", "/dev/null"], "no ~/.ssh/config"
    assert argv[-1] == "10.0.0.1" and argv[argv.index("-l"):argv.index("-l") + 2] == ["-l", "ops"]
    assert argv[3:5] == ["-p", "2222"] and "BatchMode=yes" not in argv, "interactive: a passphrase may be asked"


def test_a_pinned_key_is_one_known_hosts_line_with_its_port() -> None:
    assert cssh.known_hosts_line(PINNED) == "[10.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpinned"
    assert cssh.known_hosts_line(PINNED.model_copy(update={"port": 22})).startswith("10.0.0.1 ssh-ed25519")


def test_panes_use_the_pin_file_or_the_hosts_known_hosts_and_a_local_shell_here() -> None:
    panes = cssh.panes_for({"a": PINNED, "b": LISTED, "here": HostSpec(driver="local")}, "/run/pins", 5)
    assert [p.host for p in panes] == ["a", "b", "here"]
    assert "UserKnownHostsFile=/run/pins" in shlex.split(panes[0].command or "")
    assert "UserKnownHostsFile=/k/known_hosts" in shlex.split(panes[1].command or "")
    assert panes[2].command is None, "tmux's default shell"


@pytest.mark.parametrize(("spec", "says"), [
    (HostSpec(driver="fake"), "no shell"),
    (HostSpec(driver="ssh", address="10.0.0.3"), "set host_key or known_hosts"),
])
def test_hosts_without_a_shell_or_a_key_to_check_are_refused(spec: HostSpec, says: str) -> None:
    with pytest.raises(RequestError, match=says):
        cssh.panes_for({"x": spec}, "/run/pins", 5)


def test_the_plan_splits_per_host_tiles_names_panes_and_broadcasts() -> None:
    panes = [cssh.Pane("a", "ssh a"), cssh.Pane("b", "ssh b"), cssh.Pane("here", None)]
    plan = cssh.tmux_plan("farmhand-x-1234", panes, width=120, height=40)
    assert plan[0][:4] == ["new-session", "-d", "-s", "farmhand-x-1234"] and plan[0][-1] == "ssh a"
    assert plan[1][-2:] == ["remain-on-exit", "failed"], "set before any other pane starts"
    splits = [argv for argv in plan if argv[0] == "split-window"]
    assert [s[-1] for s in splits] == ["ssh b", "#{pane_id}"], "no command for the local host: tmux's shell"
    hosts = [argv[-1] for argv in plan if argv[:2] == ["set-option", "-p"]]
    assert hosts == ["a", "b", "here"]
    tiled_after_each_split = [plan[i + 2][0] for i, argv in enumerate(plan) if argv[0] == "split-window"]
    assert tiled_after_each_split == ["select-layout", "select-layout"]
    assert ["bind-key", "b", "set-option", "-w", "synchronize-panes"] in plan
    assert ["bind-key", "z", "resize-pane", "-Z"] in plan
    assert plan[-2][-2:] == ["synchronize-panes", "on"]


def test_session_names_are_per_farm_file_and_tmux_safe() -> None:
    one = cssh.session_name("my.farm", "/a/farm.toml")
    assert one.startswith("farmhand-my-farm-") and ":" not in one and "." not in one
    assert one != cssh.session_name("my.farm", "/b/farm.toml")
    assert one == cssh.session_name("my.farm", "/a/farm.toml")
