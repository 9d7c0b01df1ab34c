"""The shell scripts the SSH driver runs on a host, and the parsers of what they print.

Why scripts and not a helper program: hosts are agentless. Each driver call is one remote
command (``/bin/sh`` plus at most one ``awk``, a few milliseconds), batched over every node
of the farm, so a ``list()`` of a hundred nodes costs one round trip, not a hundred. ``awk``
reads /proc directly, so nothing needs Python on the host and no per-node process is forked.
The host needs a Linux /proc and the usual userland: sh, awk, GNU coreutils (timeout, dd),
GNU grep and find, util-linux setsid.

Everything here is pure (strings in, strings out) so it is tested without a host. Values put
into scripts go through :func:`shlex.quote`; node ids and signal names are checked against a
strict pattern first, because they also become file names and awk strings.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from farmhand.drivers.base import FARM_ENV, HOST_ENV, NODE_ENV, NodeLaunch, RunningNode

START_TIME_TOLERANCE = 0.05
"""Seconds; the same tolerance the local driver uses to tell a process from a recycled pid."""

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIGNAL_NAME = re.compile(r"[A-Z][A-Z0-9]{0,15}")
EXEC_TIMED_OUT = b"timeout: sending signal"
"""What ``timeout --verbose`` writes when it fires (a command may exit 124 on its own)."""


POSIX_SHELLS = frozenset({"sh", "dash", "bash", "ash", "ksh", "ksh93", "mksh", "lksh", "oksh", "yash", "posh", "zsh"})
"""Login shells that read ``export A='x'`` and ``exec prog 'arg' </dev/null`` as sh does (zsh
too: those lines use nothing where it differs). Others (csh, tcsh, fish...) get every script
through ``/bin/sh -c``."""

_RESERVED_WORDS = "! { } case do done elif else esac fi for if in then until while"
_BUILTINS = (
    ". : [ alias bg break builtin cd chdir command continue declare echo eval exec exit export false fc fg "
    "getopts hash jobs kill let local logout printf pwd read readonly return set shift source test times "
    "trap true type typeset ulimit umask unalias unset wait"
)
SHELL_WORDS = frozenset(f"{_RESERVED_WORDS} {_BUILTINS}".split(" "))
"""Words that sh itself would run (reserved words and builtins, dash's and bash's): a command
starting with one keeps its shell even when plain, because the program of the same name, where
there is one (echo, test, kill...), may behave otherwise."""

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./=:,+%@-]+")
"""Characters sh gives no meaning to in an unquoted word (no quotes, ``$``, globs, ``~``,
redirections, separators, comments, backslashes)."""


class RemoteScriptError(ValueError):
    """A value cannot be put into a remote script (the driver turns it into a DriverError)."""


@dataclass(frozen=True)
class HostFacts:
    """Per-boot constants of a host, read once per connection by :func:`hello_script`."""

    base_dir: str
    clock_ticks: int
    boot_time: float
    page_size: int
    uid: int
    login_shell: str = ""
    """The remote user's login shell (sshd's ``$SHELL``); "" when the host did not say."""

    @property
    def posix_login(self) -> bool:
        """Whether a one-line POSIX command may go to the login shell as it is (see
        :data:`POSIX_SHELLS`), sparing the ``/bin/sh -c`` wrapper's exec."""
        return self.login_shell.rsplit("/", 1)[-1] in POSIX_SHELLS


def q(value: str) -> str:
    return shlex.quote(value)


def check_name(kind: str, value: str) -> str:
    if not SAFE_NAME.fullmatch(value):
        raise RemoteScriptError(f"{kind} {value!r} may only hold letters, digits, '.', '_', '-'")
    return value


def base_dir_expression(base_dir: str | None, farm_id: str) -> str:
    """The shell expression of the base directory; ``~`` is the remote user's HOME."""
    if not base_dir:
        return '"$HOME"/.farmhand/' + q(farm_id)
    if base_dir == "~":
        return '"$HOME"'
    if base_dir.startswith("~/"):
        return '"$HOME"/' + q(base_dir[2:])
    return q(base_dir)


# awk helpers shared by the scripts below. ``readstat`` splits /proc/<pid>/stat after the
# command name (which may hold spaces and parentheses): f[1] is the state, f[2] the parent,
# f[12]+f[13] user+system ticks, f[20] the start time in ticks since boot. ``same`` is the
# local driver's identity test: alive, not a zombie, and started when the pidfile says.
AWK_LIB = r"""
function lastparen(s,   i) { for (i = length(s); i > 0; i--) if (substr(s, i, 1) == ")") return i; return 0 }
function readstat(pid, f,   path, line, n) {
  path = "/proc/" pid "/stat"; line = ""
  n = (getline line < path); close(path)
  if (n <= 0 || lastparen(line) == 0) return 0
  return split(substr(line, lastparen(line) + 2), f, " ")
}
function started(f) { return btime + f[20] / tck }
function absdiff(a, b) { return a > b ? a - b : b - a }
function same(pid, at,   f) {
  if (readstat(pid, f) < 20 || f[1] == "Z" || f[1] == "X") return 0
  return absdiff(started(f), at) < tolerance
}
function jvalue(s, key,   v) {
  if (!match(s, "\"" key "\": *(\"[^\"]*\"|[-0-9.eE+]+)")) return ""
  v = substr(s, RSTART, RLENGTH); sub(/^"[^"]*": */, "", v); gsub(/"/, "", v); return v
}
function pidfile(node, pid, at) {
  return sprintf("{\"node\": \"%s\", \"pid\": %d, \"started_at\": %s}", node, pid, at)
}
"""


def _awk(
    facts: HostFacts,
    program: str,
    *,
    shell: Mapping[str, str] | None = None,
    **values: str | int | float,
) -> str:
    """``awk`` with the shared helpers and its variables set from the environment.

    Variables travel as ``FH_<name>=...`` environment assignments read through ``ENVIRON``,
    not ``-v``, because ``-v`` would interpret backslashes in the value. ``values`` are
    Python values (numbers stay numbers in awk); ``shell`` maps names to shell expressions
    such as ``'"$pid"'``.
    """
    constants = {"tck": facts.clock_ticks, "btime": facts.boot_time, "tolerance": START_TIME_TOLERANCE}
    assigns: list[str] = []
    reads: list[str] = []
    for name, value in {**constants, **values}.items():
        assigns.append(f"FH_{name}={q(str(value))}")
        numeric = "" if isinstance(value, str) else " + 0"
        reads.append(f'{name} = ENVIRON["FH_{name}"]{numeric}')
    for name, expression in (shell or {}).items():
        assigns.append(f"FH_{name}={expression}")
        reads.append(f'{name} = ENVIRON["FH_{name}"]')
    begin = "BEGIN { " + "; ".join(reads) + " }\n"
    return f"{' '.join(assigns)} awk {q(AWK_LIB + begin + program)}"


# -- hello: once per connection ----------------------------------------------------------------

HELLO_FAILED = 3


def hello_script(base_expression: str) -> str:
    """Create the base directory (run/, logs/) and report it with the host's constants.

    Exits with :data:`HELLO_FAILED` and the reason when the user has no rights there, so the
    error can name the directory.
    """
    return f"""b={base_expression}
if ! err=$(mkdir -p -- "$b/run" "$b/logs" 2>&1); then printf '%s\\n%s\\n' "$b" "$err"; exit {HELLO_FAILED}; fi
if [ ! -w "$b/run" ] || [ ! -w "$b/logs" ]; then printf '%s\\nno write permission on %s/run or %s/logs\\n' "$b" "$b" "$b"; exit {HELLO_FAILED}; fi
cd -- "$b" || exit {HELLO_FAILED}
printf 'base %s\\ntck %s\\npage %s\\nuid %s\\nshell %s\\n' "$(pwd -P)" "$(getconf CLK_TCK)" "$(getconf PAGESIZE)" "$(id -u)" "${{SHELL:-}}"
exec awk '$1 == "btime" {{ print "btime", $2 }}' /proc/stat
"""


def parse_hello(output: str) -> HostFacts:
    values = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    return HostFacts(
        base_dir=values["base"],
        clock_ticks=int(values["tck"]),
        boot_time=float(values["btime"]),
        page_size=int(values["page"]),
        uid=int(values["uid"]),
        login_shell=values.get("shell", "").strip(),
    )


def hello_failure(output: str) -> tuple[str, str]:
    """(directory, reason) from a failed hello."""
    directory, _, reasons = output.strip().partition("\n")
    first = reasons.strip().splitlines()[:1]
    return directory, first[0].strip() if first else "cannot use it"


# -- start ---------------------------------------------------------------------------------------

WORKDIR_MISSING = 4


def start_script(
    facts: HostFacts, launch: NodeLaunch, command: str, env: Mapping[str, str]
) -> str:
    """Fork the node detached (own session, stdin closed, log appended) and write its pidfile.

    The pid's /proc stat line is read with a shell builtin right after the fork, before any
    other child is waited for, so even a node that exits at once has its start time read.
    """
    node = check_name("node id", launch.node_id)
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise RemoteScriptError(f"environment variable name {name!r} is not valid")
    assigns = " ".join(q(f"{name}={value}") for name, value in env.items())
    enter = ""
    if launch.workdir:
        workdir = q(launch.workdir)
        enter = f"cd -- {workdir} && "
        check = f"[ -d {workdir} ] || exit {WORKDIR_MISSING}\n"
    else:
        check = ""
    writer = _awk(
        facts,
        """BEGIN {
  line = stat; n = split(substr(line, lastparen(line) + 2), f, " ")
  at = n >= 20 ? sprintf("%.3f", started(f)) : "0.0"
  printf "%s", pidfile(node, pid, at) > tmp; close(tmp)
  print pid, at
}""",
        shell={"pid": '"$pid"', "stat": '"$stat"'},
        node=node,
        tmp=f"run/{node}.json.tmp",
    )
    return f"""cd -- {q(facts.base_dir)} || exit 1
{check}({enter}exec env -- {assigns} setsid /bin/sh -c {q(command)}) </dev/null >>logs/{node}.log 2>&1 &
pid=$!
read -r stat </proc/$pid/stat
{writer} && mv -f -- run/{node}.json.tmp run/{node}.json
"""


def parse_start(output: str) -> tuple[int, float]:
    pid, started_at = output.split()
    return int(pid), float(started_at)


# -- list ----------------------------------------------------------------------------------------


def list_script(facts: HostFacts, farm_id: str, host: str, *, adopt: bool) -> str:
    """Report every pidfile's node as alive or dead and remove the dead ones' pidfiles.

    With ``adopt``, first write pidfiles for this farm's processes that have none (a
    controller that died between fork and pidfile), as the local driver does once.
    """
    lister = _awk(
        facts,
        r"""FNR == 1 {
  node = jvalue($0, "node"); pid = jvalue($0, "pid"); at = jvalue($0, "started_at")
  if (node == "" || pid == "" || at == "") next
  alive = same(pid, at + 0)
  print node, pid, at, alive
  if (!alive && FILENAME ~ /^[A-Za-z0-9][A-Za-z0-9._-]*\.json$/) dead = dead " " FILENAME
}
END { if (dead != "") system("rm -f --" dead) }""",
    )
    script = f"cd -- {q(facts.base_dir)}/run 2>/dev/null || exit 0\n"
    if adopt:
        script += _adopt_script(facts, farm_id, host)
    return script + f"""set -- *.json
[ -e "$1" ] || exit 0
{lister} "$@"
"""


def _adopt_script(facts: HostFacts, farm_id: str, host: str) -> str:
    adopter = _awk(
        facts,
        r"""{
  split($0, parts, "/"); pid = parts[3]; kv = substr($0, index($0, ":") + 1)
  eq = index(kv, "="); key = substr(kv, 1, eq - 1); value = substr(kv, eq + 1)
  if (key == farm_env) farm[pid] = value; else if (key == host_env) host[pid] = value; else node[pid] = value
}
END {
  for (pid in node) {
    id = node[pid]
    if (farm[pid] != farm_id || id !~ /^[A-Za-z0-9][A-Za-z0-9._-]*$/ || (id in seen)) continue
    if ((pid in host) && host[pid] != host_name) continue
    if ((getline line < (id ".json")) >= 0) { close(id ".json"); continue }
    if (readstat(pid, f) < 20 || f[1] == "Z") continue
    if (node[f[2]] == id) continue
    seen[id] = 1
    printf "%s", pidfile(id, pid, sprintf("%.3f", started(f))) > (id ".json.adopt"); close(id ".json.adopt")
  }
}""",
        farm_id=farm_id,
        farm_env=FARM_ENV,
        host_env=HOST_ENV,
        host_name=host,
    )
    return f"""grep -s -z -H -e '^{FARM_ENV}=' -e '^{NODE_ENV}=' -e '^{HOST_ENV}=' /proc/[0-9]*/environ | tr '\\0' '\\n' | {adopter}
for t in *.json.adopt; do [ -e "$t" ] && mv -f -- "$t" "${{t%.adopt}}"; done
"""


def parse_list(output: str) -> dict[str, RunningNode]:
    found: dict[str, RunningNode] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        node_id, pid, started_at, alive = parts
        found[node_id] = RunningNode(node_id, int(pid), float(started_at), alive == "1")
    return found


# -- signal --------------------------------------------------------------------------------------


def signal_script(facts: HostFacts, node: RunningNode, signame: str) -> str:
    """Signal the node's process group, only if the pid is still the node (not recycled)."""
    if not SIGNAL_NAME.fullmatch(signame):
        raise RemoteScriptError(f"signal name {signame!r} is not valid")
    checker = _awk(facts, "BEGIN { exit !same(pid, at) }", pid=node.pid, at=node.started_at)
    return f"{checker} && kill -{signame} -{node.pid} 2>/dev/null\nexit 0\n"


# -- metrics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    """Raw counters of one node; the driver turns tick deltas into a CPU percentage."""

    cpu_ticks: int
    uptime: float
    rss_bytes: int
    connections: int


def metrics_script(facts: HostFacts, nodes: Iterable[RunningNode]) -> str:
    """CPU ticks, RSS and TCP connections (listening ones too, as psutil counts them) of
    every node, from /proc, in one pass: ``find`` lists the socket fds, ``awk`` does the rest."""
    nodes = list(nodes)
    if not nodes:
        return "exit 0\n"
    spec = " ".join(f"{check_name('node id', n.node_id)}:{n.pid}:{n.started_at!r}" for n in nodes)
    fd_dirs = " ".join(f"/proc/{n.pid}/fd" for n in nodes)
    sampler = _awk(
        facts,
        r"""BEGIN {
  split("/proc/net/tcp /proc/net/tcp6", tables, " ")
  for (t = 1; t <= 2; t++) {
    while ((getline line < tables[t]) > 0) { split(line, c, " "); if (c[10] ~ /^[0-9]+$/) tcp[c[10]] = 1 }
    close(tables[t])
  }
  getline line < "/proc/uptime"; split(line, u, " "); uptime = u[1]
}
{
  split($1, parts, "/"); ino = $2; gsub(/[^0-9]/, "", ino)
  if (ino in tcp) conns[parts[3]]++
}
END {
  n = split(spec, items, " ")
  for (i = 1; i <= n; i++) {
    split(items[i], it, ":"); pid = it[2]
    if (!same(pid, it[3] + 0)) continue
    readstat(pid, f)
    statm = "/proc/" pid "/statm"; line = ""; getline line < statm; close(statm); split(line, m, " ")
    print it[1], f[12] + f[13], uptime, m[2] * page, conns[pid] + 0
  }
}""",
        spec=spec,
        page=facts.page_size,
    )
    return (
        f"find {fd_dirs} -maxdepth 1 -lname 'socket:*' -printf '%h %l\\n' 2>/dev/null | {sampler}\n"
    )


def parse_metrics(output: str) -> dict[str, ProcessSample]:
    samples: dict[str, ProcessSample] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        node_id, ticks, uptime, rss, connections = parts
        samples[node_id] = ProcessSample(int(float(ticks)), float(uptime), int(float(rss)), int(connections))
    return samples


HOST_METRICS_SCRIPT = r"""exec awk 'BEGIN {
  getline line < "/proc/loadavg"; split(line, a, " "); print "load", a[1]
  while ((getline line < "/proc/meminfo") > 0) {
    split(line, m, " ")
    if (m[1] == "MemTotal:") print "total", m[2]
    if (m[1] == "MemAvailable:") print "available", m[2]
  }
  getline line < "/sys/devices/system/cpu/online"; print "online", line
}'
"""


def parse_host_metrics(output: str) -> tuple[float, int, int, int]:
    """(load1, cpu count, memory total, memory available) in bytes."""
    values = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    total = int(values.get("total", "0")) * 1024
    available = int(values.get("available", "0")) * 1024
    return float(values["load"]), count_cpus(values.get("online", "0")), total, available


def count_cpus(online: str) -> int:
    """CPUs in a kernel cpu list such as ``0-3,6`` (what sysconf's online count reads)."""
    count = 0
    for part in online.strip().split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            count += int(high) - int(low) + 1 if high.isdigit() else 1
    return max(count, 1)


# -- exec, files, logs, ports ------------------------------------------------------------------


def exec_script(command: str, timeout: float, env: Mapping[str, str] | None) -> str:
    """Run ``command`` with stdin closed; ``timeout`` kills its whole process group when the
    time is up, as the local driver does.

    Written for the login shell itself (when it is POSIX: ``HostFacts.posix_login``) so each
    command costs as few programs as it can: variables are exported by the shell (no
    ``env``), and a plain command (:func:`plain_words`) runs under ``timeout`` directly, any
    other through ``/bin/sh -c``. The remote processes are then login shell, ``timeout`` and
    the command (plus ``/bin/sh`` for a shell command line), where they were six: on hosts
    that share their cores, each exec is a measurable part of a 50-host round.
    """
    env = env or {}
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise RemoteScriptError(f"environment variable name {name!r} is not valid")
    seconds = max(timeout, 0.001)  # 0 would mean "no timeout" to timeout(1)
    words = plain_words(command)
    program = " ".join(words) if words is not None else f"/bin/sh -c {q(command)}"
    exports = "export " + " ".join(f"{name}={q(value)}" for name, value in env.items()) + "\n" if env else ""
    return f"{exports}exec timeout --verbose -k 2 {seconds:.3f} {program} </dev/null\n"


def plain_words(command: str) -> list[str] | None:
    """The words of ``command`` when running them as a program's argv means exactly what
    ``sh -c command`` would: words of characters sh leaves alone, separated by spaces, the
    first neither an assignment, an option-like word, a reserved word nor a builtin. Else None.

    (One difference stays: a missing program is reported by ``timeout`` instead of ``sh``,
    with the same status 127.)"""
    words = command.split(" ")
    words = [word for word in words if word]
    if not words or not all(_PLAIN_WORD.fullmatch(word) for word in words):
        return None
    first = words[0]
    if "=" in first or first.startswith("-") or first in SHELL_WORDS:
        return None
    return words


def put_file_script(path: str, mode: int, token: str) -> str:
    """Write stdin to a temporary file beside ``path`` and rename it over ``path``."""
    directory, _, name = path.rpartition("/")
    if not name:
        raise RemoteScriptError(f"{path!r} names a directory, not a file")
    if path.startswith("/") and not directory:
        directory = "/"
    directory = directory or "."
    temporary = f"{directory.rstrip('/')}/.{name}.tmp{token}"
    return f"""mkdir -p -- {q(directory)} || exit 1
t={q(temporary)}
if cat >"$t" && chmod {mode:o} "$t" && mv -f -- "$t" {q(path)}; then exit 0; fi
rm -f -- "$t"; exit 1
"""


def read_log_script(facts: HostFacts, node_id: str, offset: int, limit: int) -> str:
    log = q(f"{facts.base_dir}/logs/{check_name('node id', node_id)}.log")
    return (
        f"[ -e {log} ] || exit 0\n"
        f"exec dd if={log} iflag=skip_bytes,count_bytes skip={int(offset)} count={int(limit)}"
        " bs=65536 status=none\n"
    )


PORTS_SCRIPT = r"""exec awk 'BEGIN {
  getline line < "/proc/sys/net/ipv4/ip_local_port_range"; print "range", line
  line = "1024"; getline line < "/proc/sys/net/ipv4/ip_unprivileged_port_start"; print "unprivileged", line
}
FNR > 1 && $4 != "06" { split($2, a, ":"); if (!(a[2] in seen)) { seen[a[2]] = 1; print "used", a[2] } }
' /proc/net/tcp /proc/net/tcp6
"""
"""Ports bound on the host: every TCP socket's local port except TIME_WAIT ones (which do
not stop a SO_REUSEADDR bind), plus the ephemeral range and the first unprivileged port."""


@dataclass(frozen=True)
class PortTable:
    used: frozenset[int]
    ephemeral: tuple[int, int]
    unprivileged_start: int


def parse_ports(output: str) -> PortTable:
    used = set()
    ephemeral = (32768, 60999)
    unprivileged = 1024
    for line in output.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "used":
            used.add(int(value, 16))
        elif kind == "range":
            low, high = value.split()
            ephemeral = (int(low), int(high))
        elif kind == "unprivileged" and value.strip().isdigit():
            unprivileged = int(value)
    return PortTable(frozenset(used), ephemeral, unprivileged)
