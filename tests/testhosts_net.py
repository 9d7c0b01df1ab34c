"""The machinery of test hosts: namespaces, bridge, veths, sshd, and removing them again.

Public use goes through ``tests/testhosts.py`` (fixtures, the script for people); this module
holds the parts that touch the system, so the plugin stays short. Layout of a run:

    root namespace                      namespace fh-<pid>-<seq>-h1 ... hN
    bridge fh<pid>-<seq>b  10.213.S.1/24 ── veth ── eth0 10.213.S.(10+i)/24, sshd on port 22

Each host also has its own PID namespace and /proc (as a real host has), with its sshd as
init: a host sees only its own processes, and orphaned nodes are reaped there.
S is allocated under a lock so parallel runs never share an address; names carry the owner's
pid so leftovers of a crashed run are recognised and removed by the next run or by
``scripts/testhosts down``. Logins go to the user ``farmhand-test`` (created once and left in
place, like an installed package): shell /bin/sh and an empty HOME, because an rc file such as
root's pyenv setup costs every command 100+ ms.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testhosts_sweep as sweep
from testhosts_sweep import ROOT, destroy_all

USER = "farmhand-test"
HOME = ROOT / "home"
ROOT_USER = "farmhand-root"
"""A second name for uid 0 (``root_login=True``): /bin/sh and an empty HOME, so a command run
as root over SSH reads no rc file (root's own may hold a pyenv setup that takes seconds,
or a minute when its lock is stale)."""
ROOT_HOME = ROOT / "home-root"
NET_PREFIX = "10.213"
SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
FIRST_HOST_OCTET = 10
UNUSED_OCTET = 250
MAX_HOSTS = UNUSED_OCTET - FIRST_HOST_OCTET - 1

_run_sequence = iter(range(1_000_000))


@dataclass(frozen=True)
class TestHost:
    """One host of a run: where to reach it and which files prove who it is."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    name: str
    netns: str
    link: str
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    public_key: str
    """The host's own public key ("ssh-ed25519 AAAA..."), for pinning instead of known_hosts."""
    base_dir: Path
    dir: Path

    def spec_fields(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``HostSpec`` that reach this host over SSH."""
        fields: dict[str, Any] = {
            "driver": "ssh",
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "base_dir": str(self.base_dir),
        }
        fields.update(overrides)
        return fields

    def spec(self, **overrides: Any) -> Any:
        """A ``farmhand.spec.models.HostSpec`` for this host (imported late: the script for
        people runs without farmhand on the path)."""
        from farmhand.spec.models import HostSpec

        return HostSpec(**self.spec_fields(**overrides))


@dataclass
class TestHostRun:
    """N test hosts made together, removed together."""

    __test__ = False

    name: str
    subnet: int
    dir: Path
    bridge: str
    key_file: Path
    wrong_key_file: Path
    """A client key that no host accepts."""
    known_hosts: Path
    hosts: list[TestHost] = field(default_factory=list)
    _sshd: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (where the controller and lbs are)."""
        return f"{NET_PREFIX}.{self.subnet}.1"

    @property
    def unused_address(self) -> str:
        """An address on this run's bridge where nothing answers (connects fail: no route)."""
        return f"{NET_PREFIX}.{self.subnet}.{UNUSED_OCTET}"

    def host(self, name: str) -> TestHost:
        return next(h for h in self.hosts if h.name == name)

    def cut(self, host: TestHost) -> None:
        """Unplug the host's cable: its link on the bridge goes down, packets are dropped."""
        _ip("link", "set", host.link, "down")

    def restore(self, host: TestHost) -> None:
        """Plug the host's cable back in."""
        _ip("link", "set", host.link, "up")

    @contextlib.contextmanager
    def link_cut(self, host: TestHost) -> Iterator[None]:
        """The host is cut off inside the block and restored after it, also on failure."""
        self.cut(host)
        try:
            yield
        finally:
            self.restore(host)

    def run_in(self, host: TestHost, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the host's network namespace (as root), for tests that inspect it."""
        return subprocess.run(
            ["ip", "netns", "exec", host.netns, *argv], capture_output=True, text=True, check=False
        )

    def close(self) -> None:
        """Remove everything this run made. Each sshd is the init of its host's PID namespace:
        killing it kills every process of that host, and its parent (``unshare``, our child)
        reaps it, so no zombie is left behind."""
        for process in self._sshd.values():
            for init in sweep.children_of(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(init, signal.SIGKILL)
        for process in self._sshd.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._sshd.clear()
        sweep.destroy(self.name)

    def farm_toml(self) -> str:
        """A ``[hosts.*]`` snippet for a farm file, for people trying the hosts by hand."""
        lines = []
        for host in self.hosts:
            lines.append(f"[hosts.{host.name}]")
            for key, value in host.spec_fields().items():
                rendered = value if isinstance(value, int) else f'"{value}"'
                lines.append(f"{key} = {rendered}")
            lines.append("")
        return "\n".join(lines)


def create_run(count: int, *, owner: str | None = None, max_startups: str = "100:30:200",
               root_login: bool = False) -> TestHostRun:
    """Make ``count`` hosts; on any failure everything made so far is removed again.

    ``owner`` is ``None`` for runs that belong to this process (stale once it dies) or
    ``"manual"`` for runs made by ``scripts/testhosts up`` (removed only by ``down``).
    ``max_startups`` is sshd's ``MaxStartups`` (raised by default; "10:30:100" is sshd's own
    default, for tests of how clients cope with it). ``root_login`` also lets uid 0 log in
    with the run's key as ``ROOT_USER`` (``host.spec_fields(user=ROOT_USER)``): what needs
    root on a host, such as keepalived moving an address, runs there as on a real machine.
    """
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"between 1 and {MAX_HOSTS} hosts, not {count}")
    if os.geteuid() != 0:
        raise PermissionError("test hosts need root (network namespaces, sshd)")
    for tool in ("ip", "ssh-keygen", SSHD):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is missing: run scripts/bootstrap as root")
    ROOT.mkdir(mode=0o755, exist_ok=True)
    _sweep_once()
    name = f"fh-{os.getpid()}-{next(_run_sequence)}"
    run_dir = ROOT / name
    try:
        with sweep.lock():
            _ensure_user()
            if root_login:
                _ensure_root_user()
            subnet = _free_subnet()
            run_dir.mkdir(mode=0o755)
            (run_dir / "owner").write_text(owner or sweep.owner_stamp(os.getpid()))
            (run_dir / "subnet").write_text(str(subnet))
            bridge = sweep.link_name(name, "b")
            _ip("link", "add", bridge, "type", "bridge")
            _ip("addr", "add", f"{NET_PREFIX}.{subnet}.1/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
        run = TestHostRun(
            name=name,
            subnet=subnet,
            dir=run_dir,
            bridge=bridge,
            key_file=_keygen(run_dir / "client_key"),
            wrong_key_file=_keygen(run_dir / "wrong_key"),
            known_hosts=run_dir / "known_hosts",
        )
        for index in range(1, count + 1):
            run.hosts.append(_make_host(run, index, max_startups, root_login))
        run.known_hosts.write_text(
            "".join(f"{h.address} {h.public_key}\n" for h in run.hosts)
        )
    except BaseException:
        sweep.destroy(name)
        raise
    try:
        for host in run.hosts:
            run._sshd[host.name] = _start_sshd(host)
        for host in run.hosts:
            _wait_listening(host, run._sshd[host.name])
    except BaseException:
        run.close()
        raise
    return run


# -- making hosts ------------------------------------------------------------------------------


def _make_host(run: TestHostRun, index: int, max_startups: str, root_login: bool = False) -> TestHost:
    host_name = f"h{index}"
    host_dir = run.dir / host_name
    host_dir.mkdir(mode=0o755)
    base_dir = host_dir / "base"
    base_dir.mkdir(mode=0o755)
    _chown_to_user(base_dir)
    netns = f"{run.name}-{host_name}"
    link = sweep.link_name(run.name, f"v{index}")
    address = f"{NET_PREFIX}.{run.subnet}.{FIRST_HOST_OCTET + index}"
    _ip("netns", "add", netns)
    _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _ip("link", "set", link, "master", run.bridge, "up")
    _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
    _ip("-n", netns, "link", "set", "eth0", "up")
    _ip("-n", netns, "link", "set", "lo", "up")
    host_key = _keygen(host_dir / "ssh_host_ed25519_key")
    public_key = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    authorized = host_dir / "authorized_keys"
    authorized.write_text(run.key_file.with_suffix(".pub").read_text())
    authorized.chmod(0o644)
    (host_dir / "sshd_config").write_text(_sshd_config(address, host_dir, host_key, authorized, max_startups, root_login))
    return TestHost(
        name=host_name,
        netns=netns,
        link=link,
        address=address,
        port=SSH_PORT,
        user=USER,
        key_file=run.key_file,
        known_hosts=run.known_hosts,
        public_key=public_key,
        base_dir=base_dir,
        dir=host_dir,
    )


def _sshd_config(address: str, host_dir: Path, host_key: Path, authorized: Path, max_startups: str,
                 root_login: bool = False) -> str:
    """One sshd's config; MaxStartups/MaxSessions raised so parallel tests are not dropped."""
    return "\n".join(
        [
            f"ListenAddress {address}:{SSH_PORT}",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            "PidFile none",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password" if root_login else "PermitRootLogin no",
            f"AllowUsers {USER} {ROOT_USER}" if root_login else f"AllowUsers {USER}",
            f"MaxStartups {max_startups}",
            "MaxSessions 64",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "",
        ]
    )


def _start_sshd(host: TestHost) -> subprocess.Popen[bytes]:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    return subprocess.Popen(
        ["ip", "netns", "exec", host.netns,
         "unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
         SSHD, "-D",
         "-f", str(host.dir / "sshd_config"), "-E", str(host.dir / "sshd.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_listening(host: TestHost, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log = (host.dir / "sshd.log").read_text(errors="replace")
            raise RuntimeError(f"sshd of {host.netns} exited with {process.returncode}: {log}")
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex((host.address, host.port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd of {host.netns} not listening on {host.address} after {timeout}s")
        time.sleep(0.02)


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _ensure_user() -> None:
    """The login user: /bin/sh, an empty HOME, and a password field that is not locked
    (sshd without PAM refuses even key logins to accounts whose password starts with "!")."""
    try:
        subprocess.run(["id", "-u", USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", str(HOME), "--shell", "/bin/sh", USER],
            check=True,
            capture_output=True,
        )
    shadow = Path("/etc/shadow").read_text()
    entry = next((line for line in shadow.splitlines() if line.startswith(USER + ":")), "")
    if entry.split(":")[1:2] != ["*"]:
        subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)
    HOME.mkdir(mode=0o755, exist_ok=True)
    _chown_to_user(HOME)
    for rc_file in (".profile", ".bashrc", ".bash_profile", ".bash_logout"):
        path = HOME / rc_file
        if not path.exists() or path.stat().st_size:
            path.write_text("")


def _ensure_root_user() -> None:
    """``ROOT_USER``: uid 0 under another name, made once and left in place like ``USER``."""
    try:
        subprocess.run(["id", "-u", ROOT_USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(
            ["useradd", "--non-unique", "--uid", "0", "--gid", "0", "--no-create-home",
             "--home-dir", str(ROOT_HOME), "--shell", "/bin/sh", ROOT_USER],
            check=True,
            capture_output=True,
        )
    shadow = Path("/etc/shadow").read_text()
    entry = next((line for line in shadow.splitlines() if line.startswith(ROOT_USER + ":")), "")
    if entry.split(":")[1:2] != ["*"]:
        subprocess.run(["usermod", "-p", "*", ROOT_USER], check=True, capture_output=True)
    ROOT_HOME.mkdir(mode=0o700, exist_ok=True)


def _chown_to_user(path: Path) -> None:
    shutil.chown(path, USER, USER)


def _free_subnet() -> int:
    """The lowest S with 10.213.S.0/24 used by no run and no interface (called under the lock)."""
    taken = set()
    for name in sweep.run_names():
        with contextlib.suppress(OSError, ValueError):
            taken.add(int((ROOT / name / "subnet").read_text()))
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    taken.update(int(m) for m in re.findall(rf"inet {re.escape(NET_PREFIX)}\.(\d+)\.", addresses))
    for subnet in range(1, 255):
        if subnet not in taken:
            return subnet
    raise RuntimeError("no free /24 left in 10.213.0.0/16: run scripts/testhosts down")


_swept = False


def _sweep_once() -> None:
    """Remove leftovers of crashed runs before the first run of this process."""
    global _swept
    if not _swept:
        _swept = True
        destroy_all(stale_only=True)


def _ip(*argv: str) -> None:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {result.stderr.strip()}")
