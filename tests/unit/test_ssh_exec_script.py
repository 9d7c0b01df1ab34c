"""How the SSH driver's exec script is written: as few remote programs as it can, with the
same meaning as ``sh -c COMMAND`` (run for real on test hosts in
tests/integration/hosts/test_ssh_exec_lean.py)."""

from __future__ import annotations

import shlex

import pytest

from farmhand.drivers import ssh_remote as remote


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("uname -a", ["uname", "-a"]),
        ("  uname   -a ", ["uname", "-a"]),
        ("/usr/bin/dd if=/dev/zero of=/tmp/x bs=1M count=1", ["/usr/bin/dd", "if=/dev/zero", "of=/tmp/x", "bs=1M", "count=1"]),
        ("systemctl restart web@1.service", ["systemctl", "restart", "web@1.service"]),
        ("date +%s", ["date", "+%s"]),
    ],
)
def test_plain_commands_run_as_their_words(command: str, words: list[str]) -> None:
    assert remote.plain_words(command) == words


@pytest.mark.parametrize(
    "command",
    [
        "echo hi",  # a builtin: sh's echo is not /bin/echo
        "cd /tmp",
        "true",
        "kill -9 1",
        "test -e x",
        "[ -e x ]",
        "exec sleep 1",
        "if true",
        "A=1 env",  # an assignment
        "-x",  # would read as an option of timeout
        "ls *.log",  # a glob
        "ls ~",  # a tilde
        "echo $HOME",
        "ls; ls",
        "ls | wc -l",
        "ls > out",
        "ls 'a b'",
        'ls "a b"',
        "ls a\\ b",
        "ls\tx",
        "ls\nls",
        "ls # comment",
        "sleep 1 &",
        "(ls)",
        "",
        "   ",
    ],
)
def test_anything_sh_would_read_differently_keeps_its_shell(command: str) -> None:
    assert remote.plain_words(command) is None
    if command.strip():
        assert f"/bin/sh -c {shlex.quote(command)} " in remote.exec_script(command, 5, None)


def test_the_exec_script_is_one_timeout_with_no_env_program() -> None:
    assert remote.exec_script("uname -a", 2.5, None) == "exec timeout --verbose -k 2 2.500 uname -a </dev/null\n"
    script = remote.exec_script("echo $A", 2.5, {"A": "it's a b", "B": "x\ny"})
    assert script.splitlines()[0] == "export A='it'\"'\"'s a b' B='x"
    assert "env" not in script.split()
    assert script.endswith("exec timeout --verbose -k 2 2.500 /bin/sh -c 'echo $A' </dev/null\n")


@pytest.mark.parametrize(
    ("shell", "posix"),
    [("/bin/sh", True), ("/bin/bash", True), ("/usr/bin/zsh", True), ("/bin/dash", True), ("/usr/bin/fish", False),
     ("/bin/tcsh", False), ("/bin/csh", False), ("", False), ("/usr/sbin/nologin", False)],
)
def test_only_posix_login_shells_take_scripts_directly(shell: str, posix: bool) -> None:
    facts = remote.HostFacts(base_dir="/b", clock_ticks=100, boot_time=1.0, page_size=4096, uid=0, login_shell=shell)
    assert facts.posix_login is posix


def test_hello_reports_the_login_shell() -> None:
    assert "${SHELL:-}" in remote.hello_script('"$HOME"')
    answer = "base /b\ntck 100\npage 4096\nuid 1000\nshell /bin/bash\nbtime 1700000000\n"
    assert remote.parse_hello(answer).login_shell == "/bin/bash"
    older = remote.parse_hello("base /b\ntck 100\npage 4096\nuid 1000\nshell \nbtime 1\n")
    assert older.login_shell == "" and not older.posix_login
