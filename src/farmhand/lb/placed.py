"""One member of a load-balancer pair: the builtin engine (or HAProxy, or the SMTP gate), its
watcher and keepalived, run on a named SSH host and steered over one SSH connection.

Why its own connection (not the node driver's): the pair must stay steerable while the
controller's node work on that host is slow, and it needs two things a driver does not
offer: a channel to the engine's Unix control socket (SSH ``direct-streamlocal``, which sshd
allows by default; no port is opened, nothing new to secure) and root, which keepalived needs
to add and remove the address. Everything on the host lives in ``BASE/lb/ROLE/`` (BASE is the
host's ``base_dir``, default ``~/.farmhand/<farm id>``), next to what the controller runs there:

    engine.json engine.pid control.sock engine.log   the builtin engine (as on the controller's machine)
    keepalived.conf keepalived.pid vrrp.pid keepalived.log
    check notify states alive watch.pid watch.log    keepalived's helpers (lb/keepalived_config.py)
    tls/cert-0.pem ... (or tls/acme.pem)             an HTTPS listener's certificates (0600 in a 0700 folder)
    gate.json gate.log gate/ROLE/{control.sock,gate.pid}   the SMTP gate, when the pair runs it

Every process is started detached (its own session), so it outlives the controller and the
connection; a new controller adopts the engine by its control socket and keepalived by its
pidfile. Scripts are plain ``/bin/sh``; the host needs Python with farmhand (``python`` in the
lb table, default the controller's own interpreter path), keepalived and iproute2.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from farmhand.drivers.ssh_session import Completed, Runner, SshSession, SshTimeouts
from farmhand.errors import FarmhandError, LbError
from farmhand.lb import keepalived_config as kc
from farmhand.lb.settings import CertEntry, EngineSettings, TlsSettings
from farmhand.spec.models import HostSpec

TIMEOUTS = SshTimeouts(connect=5.0, call=10.0, keepalive_interval=2.0, keepalive_count=2,
                       backoff_initial=0.5, backoff_max=5.0)
"""Shorter than the node driver's: a member that does not answer is worked around, not waited for."""
START_TIMEOUT = 30.0
CALL_TIMEOUT = 3.0
KEEPALIVED = "keepalived"
NOT_ROOT = 64
HOLDS_MARK = "--farmhand-addresses--"
SOCKET_PATH_MAX = 107
TLS_DIR = "tls"
"""The member's certificate folder, inside its own (``BASE/lb/ROLE/tls``)."""


class MemberSession(SshSession):
    """The member host's connection, plus calls to a Unix socket on the host."""

    async def unix_call(self, path: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One JSON-line request to the engine's control socket through the connection."""
        try:
            async with asyncio.timeout(timeout):
                connection = await self._connected()
                reader, writer = await connection.open_unix_connection(path)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    line = await reader.readline()
                finally:
                    writer.close()
        except TimeoutError:
            raise LbError(f"host {self.host}: no answer from {path} within {timeout:g}s") from None
        except (asyncssh.Error, OSError) as error:
            raise LbError(f"host {self.host}: cannot reach {path}: {error}") from None
        if not line:
            raise LbError(f"host {self.host}: {path} closed without answering {request.get('op')!r}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise LbError(f"host {self.host}: {request.get('op')!r} failed: {answer.get('error')}")
        answer.pop("ok", None)
        return answer


@dataclass(frozen=True)
class MemberPlan:
    """What one member runs: the engine's settings and keepalived's, host paths to be filled."""

    role: str
    host: str
    index: int
    vip: str
    vrrp_id: int
    preempt: bool
    interface: str | None
    python: str
    settings: EngineSettings
    advert_int: float = 0.1
    gate: dict[str, Any] | None = None
    """The SMTP gate's configuration (``farmhand.gate.dataplane.member_config``): the member
    runs the gate instead of an engine."""
    watch: bool = True
    """Run the watcher that faults the instance the instant the balancer dies (off only to
    measure keepalived's own check against it: bench/lb_pair_takeover.py)."""


async def _no_prepare(run: Runner) -> None:
    return None


class PlacedMember:
    """The handle of one member; every method raises ``FarmhandError`` naming the host."""

    def __init__(self, plan: MemberPlan, host: HostSpec, farm_id: str) -> None:
        self.plan = plan
        self.host = plan.host
        self.session = MemberSession(plan.host, host, TIMEOUTS, _no_prepare)
        base = host.base_dir or f"~/.farmhand/{farm_id}"
        self._base = base
        self.dir: str | None = None
        """The member's folder on the host, absolute, once connected."""
        self.interface: str | None = plan.interface
        self.tls_loaded: str | None = None
        """The certificates' version this member's engine was last told to load."""

    def __repr__(self) -> str:
        return f"<PlacedMember {self.plan.role}@{self.host} {self.session!r}>"

    def _path(self, name: str) -> str:
        assert self.dir is not None
        return f"{self.dir}/{name}"

    @property
    def settings(self) -> EngineSettings:
        """The engine's settings as the host sees them: its certificates in its own folder."""
        assert self.dir is not None
        return member_settings(self.plan.settings, self.dir)

    async def _sh(self, script: str, timeout: float = CALL_TIMEOUT * 3, input: bytes | None = None) -> Completed:
        return await self.session.run("exec /bin/sh -c " + shlex.quote(script), timeout=timeout, input=input)

    async def prepare(self) -> None:
        """Make the member's folder; check root; learn the interface on the vip's network."""
        if self.dir is not None and self.session.connected:
            return
        base = self._base
        base_expr = '"$HOME"/' + shlex.quote(base[2:]) if base.startswith("~/") else shlex.quote(base)
        vip = kc_vip_address(self.plan.vip)
        script = (
            f'[ "$(id -u)" = 0 ] || exit {NOT_ROOT}\n'
            f"d={base_expr}/lb/{shlex.quote(self.plan.role)} && mkdir -p \"$d\" && cd \"$d\" && pwd\n"
            f"ip -o -4 route show table main to match {shlex.quote(vip)} 2>/dev/null\n"
        )
        result = await self._sh(script)
        if result.exit_status == NOT_ROOT:
            raise LbError(f"host {self.host}: keepalived needs root to move the address: set user = \"root\" in [hosts.{self.host}]")
        if result.exit_status != 0:
            raise LbError(f"host {self.host}: cannot prepare the balancer's folder: {_text(result)}")
        lines = result.stdout.decode(errors="replace").splitlines()
        self.dir = lines[0].strip()
        if self.interface is None:
            self.interface = interface_from_routes(lines[1:])
            if self.interface is None:
                raise LbError(f"host {self.host}: no interface reaches {vip}; set interface = \"...\" in the lb table")

    # -- the engine ---------------------------------------------------------------------------

    @property
    def direct(self) -> bool:
        """The builtin engine and the SMTP gate are steered through their control socket;
        other engines through their own handle run on the host, one process per call
        (lb/member_call.py)."""
        return self.plan.gate is not None or self.plan.settings.engine == "builtin"

    @property
    def control_socket(self) -> str:
        """The socket the member's balancer answers on (what the watcher holds open)."""
        if self.plan.gate is not None:
            return self._path(f"gate/{self.plan.role}/control.sock")  # farmhand.gate.proxy.paths
        return self._path("control.sock" if self.plan.settings.engine == "builtin" else "admin.sock")

    async def call(self, request: dict[str, Any], timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        await self.prepare()
        if not self.direct:
            return await self._handle_call(request, timeout=timeout + START_TIMEOUT if request["op"] == "ensure" else timeout + 5.0)
        return await self.session.unix_call(self.control_socket, request, timeout)

    async def _handle_call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        body = json.dumps({**request, "settings": self.settings.to_json()}).encode()
        script = f"exec {shlex.quote(self.plan.python)} -m farmhand.lb.member_call {shlex.quote(self.dir or '.')}"
        result = await self._sh(script, timeout=timeout, input=body)
        try:
            answer: dict[str, Any] = json.loads(result.stdout.decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LbError(f"host {self.host}: {request['op']!r} to the load balancer failed: {_text(result)}") from None
        if not answer.pop("ok", False):
            raise LbError(f"host {self.host}: {request['op']!r} to the load balancer failed: {answer.get('error')}")
        return answer

    async def ensure_engine(self) -> bool:
        """Start the engine on the host, or adopt it (True) when it runs with these settings."""
        await self.prepare()
        settings = self.settings
        if self.plan.gate is not None:
            return await self._ensure_gate(self.plan.gate)
        if not self.direct:
            return bool((await self.call({"op": "ensure"}))["adopted"])
        with contextlib.suppress(FarmhandError):
            answer = await self.call({"op": "ping"})
            if list(answer.get("restart_key", [])) == list(settings.restart_key()):
                if answer.get("fingerprint") != settings.fingerprint():
                    await self.call({"op": "configure", "settings": settings.to_json()})
                return True
            await self.stop_engine()
        data = json.dumps(settings.to_json(), indent=2).encode()
        engine_json = self._path("engine.json")
        script = (
            f"cat > {shlex.quote(engine_json)}.tmp && mv {shlex.quote(engine_json)}.tmp {shlex.quote(engine_json)} && "
            f"exec {shlex.quote(self.plan.python)} -m farmhand.lb.engine {shlex.quote(engine_json)}"
        )
        result = await self._sh(script, timeout=START_TIMEOUT, input=data)
        if result.exit_status != 0:
            raise LbError(f"host {self.host}: the load balancer did not start: {_text(result)} "
                          f"(engine log: {self._path('engine.log')} on {self.host})")
        return False

    async def _ensure_gate(self, gate: dict[str, Any]) -> bool:
        """Adopt the gate that runs on the member with this listener (sending it new options
        if they changed), or start one (detached, as ``GateDataPlane`` does locally) and wait
        for its control socket to answer."""
        if len(self.control_socket) > SOCKET_PATH_MAX:
            raise LbError(f"host {self.host}: the gate's socket path {self.control_socket} is too long; "
                          f"set a shorter base_dir in [hosts.{self.host}]")
        config = {key: value for key, value in gate.items() if key != "options_hash"}
        config["state_dir"] = self.dir
        with contextlib.suppress(FarmhandError):
            answer = await self.call({"op": "ping"})
            if answer.get("wanted_listen") == config["listen"]:
                if answer.get("options_hash") != gate.get("options_hash"):
                    await self.call({"op": "configure", "options": config["options"]})
                return True
            await self.stop_engine()
        q = shlex.quote
        script = (
            f"cd {q(self.dir or '.')} && cat > gate.json.tmp && mv gate.json.tmp gate.json && "
            f"rm -f {q(f'gate/{self.plan.role}/gate.pid')} && "
            f'setsid -f {q(self.plan.python)} -m farmhand.gate.proxy --config "$PWD/gate.json" >>gate.log 2>&1 </dev/null'
        )
        result = await self._sh(script, input=json.dumps(config, indent=2).encode())
        if result.exit_status != 0:
            raise LbError(f"host {self.host}: the SMTP gate did not start: {_text(result)}")
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while True:
            try:
                await self.call({"op": "ping"})
                return False
            except FarmhandError:
                if asyncio.get_running_loop().time() > deadline:
                    log = await self._sh(f"tail -n 5 {q(self._path('gate.log'))}")
                    raise LbError(f"host {self.host}: the SMTP gate did not answer within {START_TIMEOUT:g}s: "
                                  f"{_text(log)}") from None
                await asyncio.sleep(0.1)

    async def stop_engine(self) -> None:
        if self.plan.gate is not None:
            with contextlib.suppress(FarmhandError):
                await self.call({"op": "stop"})
            grace = int(min(self.plan.settings.drain_timeout, 10.0))
            await self._sh(_kill_script(self._path(f"gate/{self.plan.role}/gate.pid"), wait=grace + 5))
            return
        if not self.direct:
            await self.call({"op": "stop"}, timeout=20.0)
            return
        with contextlib.suppress(FarmhandError):
            await self.call({"op": "stop", "grace": min(self.plan.settings.drain_timeout, 10.0)})
        await self._sh(_kill_script(self._path("engine.pid"), wait=15))

    # -- certificates (an HTTPS listener) ----------------------------------------------------

    async def push_certs(self) -> bool:
        """Copy the certificate files the controller keeps (``STATE/tls/ROLE``) into the
        member's ``tls/`` folder, 0600, each replaced atomically and only when its content
        changed (so an engine never reads half a file); True when one changed. Nothing to do
        without an HTTPS listener."""
        tls = self.plan.settings.tls
        if tls is None:
            return False
        await self.prepare()
        files = {}
        for entry in tls.certs:
            try:
                files[PurePosixPath(entry.path).name] = Path(entry.path).read_bytes()
            except OSError as error:
                raise LbError(f"host {self.host}: cannot read the certificate {entry.path} to copy it there: "
                              f"{error.strerror or error}") from None
        result = await self._sh(f"cd {shlex.quote(self.dir or '.')}\n" + cert_push_script(files))
        if result.exit_status not in (0, CERTS_CHANGED):
            raise LbError(f"host {self.host}: cannot copy the certificates there: {_text(result)}")
        return result.exit_status == CERTS_CHANGED

    async def set_tls(self, tls: TlsSettings) -> None:
        """New certificates: copied to the host, then loaded by the running engine without a
        restart (the builtin engine's ``configure``, HAProxy's runtime API)."""
        self.plan = replace(self.plan, settings=self.plan.settings.with_tls(tls))
        await self.push_certs()
        await self.load_tls()

    async def load_tls(self) -> None:
        """Tell the running engine to load the certificate files in its folder again."""
        settings = self.settings
        if settings.tls is None:
            return
        if self.direct:
            await self.call({"op": "configure", "settings": settings.to_json()})
        else:
            await self.call({"op": "set_tls", "tls": asdict(settings.tls)})
        self.tls_loaded = settings.tls.version

    # -- keepalived and the watcher -----------------------------------------------------------

    @property
    def _watched(self) -> bool:
        """The watcher speaks the builtin engine's control channel and HAProxy's runtime API;
        other engines rely on keepalived's check (once a second)."""
        return self.plan.watch and (self.plan.gate is not None or self.plan.settings.engine in ("builtin", "haproxy"))

    def member_config(self) -> kc.MemberConfig:
        assert self.interface is not None
        return kc.MemberConfig(
            role=self.plan.role, host=self.host, index=self.plan.index, vip=self.plan.vip,
            interface=self.interface, vrrp_id=self.plan.vrrp_id, check_port=self.plan.settings.listen_port,
            check_script=self._path("check"), notify_script=self._path("notify"),
            state_file=self._path("states"), track_file=self._path("alive") if self._watched else "",
            preempt=self.plan.preempt, advert_int=self.plan.advert_int,
        )

    async def ensure_keepalived(self) -> None:
        """Write keepalived's files; start it and the watcher if they do not run; reload it
        (SIGHUP) when its configuration changed."""
        await self.prepare()
        config = self.member_config()
        check = (kc.check_pid_script(self._path(f"gate/{self.plan.role}/gate.pid")) if self.plan.gate is not None
                 else kc.check_script(config.check_port))
        files = {
            "check": (check, 0o755),
            "notify": (kc.notify_script(config.state_file), 0o755),
            "keepalived.conf": (kc.keepalived_conf(config), 0o644),
        }
        q = shlex.quote
        lines = [f"cd {q(self.dir or '.')}", "changed=0"]
        for name, (text, mode) in files.items():
            lines.append(f"cat > {name}.new <<'FARMHAND_EOF'\n{text}FARMHAND_EOF")
            lines.append(f"chmod {mode:o} {name}.new")
            lines.append(f"if cmp -s {name}.new {name}; then rm -f {name}.new; else mv {name}.new {name}; changed=1; fi")
        python = q(self.plan.python)
        if self._watched:
            engine = "haproxy" if self.plan.gate is None and self.plan.settings.engine == "haproxy" else "builtin"
            sock = self.control_socket  # the gate answers the builtin engine's ping
            lines.append(f'w=$(head -n1 watch.pid 2>/dev/null); if [ -n "$w" ] && [ -r /proc/"$w"/cmdline ] && '
                         f'! grep -qaF {q(sock)} /proc/"$w"/cmdline; then kill "$w"; sleep 0.2; fi')
            lines.append(f"setsid -f {python} -m farmhand.lb.pair_watch {q(sock)} "
                         f"{q(self._path('alive'))} {q(engine)} >>watch.log 2>&1 </dev/null")
        lines += [
            'pid=$(cat keepalived.pid 2>/dev/null)',
            'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then',
            '  [ "$changed" = 1 ] && kill -HUP "$pid"',
            "else",
            f"  setsid -f {KEEPALIVED} -n -l -D -G -P -f \"$PWD/keepalived.conf\" -p \"$PWD/keepalived.pid\" "
            "-r \"$PWD/vrrp.pid\" >>keepalived.log 2>&1 </dev/null",
            "fi",
            "exit 0",
        ]
        result = await self._sh("\n".join(lines))
        if result.exit_status != 0:
            raise LbError(f"host {self.host}: cannot start keepalived: {_text(result)}")

    async def transitions(self, lines: int = 50) -> tuple[list[kc.Transition], bool]:
        """keepalived's last transitions on this member, oldest first, and whether the
        address is on its interface now (the truth when a notify line was lost)."""
        await self.prepare()
        vip = kc_vip_address(self.plan.vip)
        script = (f"tail -n {int(lines)} {shlex.quote(self._path('states'))} 2>/dev/null; echo {HOLDS_MARK}; "
                  f"ip -o -4 addr show dev {shlex.quote(self.interface or 'lo')} 2>/dev/null; exit 0")
        result = await self._sh(script, timeout=CALL_TIMEOUT)
        states, _, addresses = result.stdout.decode(errors="replace").partition(HOLDS_MARK)
        return kc.parse_states(states), f" {vip}/" in addresses

    async def stop(self) -> None:
        """Stop keepalived (it drops the address), the watcher and the engine."""
        await self.prepare()
        await self._sh(_kill_script(self._path("keepalived.pid"), wait=10) + "\n"
                       + _kill_script(self._path("watch.pid"), wait=5))
        await self.stop_engine()

    async def close(self) -> None:
        await self.session.close()


CERTS_CHANGED = 3
"""Exit status of ``cert_push_script`` when it replaced a file."""


def member_settings(settings: EngineSettings, folder: str) -> EngineSettings:
    """``settings`` as a member's engine reads them: an HTTPS listener on the wildcard address
    (a backup serves the moment the address arrives) with each certificate the copy in the
    member's ``tls/`` folder (same file name as the controller's, so the version digest still
    says whether the content is the same)."""
    tls = settings.tls
    if tls is None:
        return settings
    certs = tuple(CertEntry(path=f"{folder}/{TLS_DIR}/{PurePosixPath(c.path).name}", names=c.names) for c in tls.certs)
    return settings.with_tls(replace(tls, listen_host="0.0.0.0", certs=certs))


def cert_push_script(files: dict[str, bytes]) -> str:
    """A ``/bin/sh`` script, run in the member's folder, that writes ``files`` (name -> PEM)
    into ``tls/`` (0700) as 0600 files, each renamed into place only when its content changed,
    and removes older ``.pem`` files no longer served; it exits ``CERTS_CHANGED`` when it
    replaced or removed one. base64 keeps any byte out of the shell's reach."""
    lines = [f"umask 077\nmkdir -p {TLS_DIR} && chmod 700 {TLS_DIR} && cd {TLS_DIR} || exit 1", "changed=0"]
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name")
        q = shlex.quote(name)
        encoded = base64.encodebytes(data).decode()
        lines.append(f"base64 -d > {q}.new <<'FARMHAND_EOF' || exit 1\n{encoded}FARMHAND_EOF")
        lines.append(f"chmod 600 {q}.new")
        lines.append(f"if cmp -s {q}.new {q}; then rm -f {q}.new; else mv {q}.new {q} || exit 1; changed=1; fi")
    keep = " ".join(shlex.quote(name) for name in files) or "''"
    lines.append(f'for f in *.pem; do [ -e "$f" ] || continue; case " {keep} " in *" $f "*) ;; '
                 '*) rm -f "$f"; changed=1;; esac; done')
    lines.append(f'[ "$changed" = 1 ] && exit {CERTS_CHANGED}; exit 0')
    return "\n".join(lines) + "\n"


def interface_from_routes(lines: list[str]) -> str | None:
    """The interface of the most specific route of the main table to the vip's network
    (``ip -o route show table main to match VIP``). Not ``ip route get``: on the member that
    holds the address it answers ``local ... dev lo``."""
    best: tuple[int, str] | None = None
    for line in lines:
        words = line.split()
        if "dev" not in words or words.index("dev") + 1 >= len(words) or not words:
            continue
        prefix = 0 if words[0] == "default" else int(words[0].partition("/")[2] or 32)
        device = words[words.index("dev") + 1]
        if best is None or prefix > best[0]:
            best = (prefix, device)
    return best[1] if best is not None else None


def kc_vip_address(vip: str) -> str:
    return vip.split("/", 1)[0]


def _kill_script(pidfile: str, wait: int) -> str:
    """TERM the process in ``pidfile``, wait up to ``wait`` s, then KILL it; fine if gone."""
    q = shlex.quote(pidfile)
    return (
        f'pid=$(cat {q} 2>/dev/null | head -n1); '
        f'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; i=0; '
        f'while kill -0 "$pid" 2>/dev/null && [ $i -lt {wait * 10} ]; do sleep 0.1; i=$((i+1)); done; '
        f'kill -9 "$pid" 2>/dev/null; fi; true'
    )


def plan_members(role: str, settings: EngineSettings, *, hosts: tuple[str, ...], vip: str, vrrp_id: int,
                 preempt: bool, interface: str | None, python: str | None,
                 gate: dict[str, Any] | None = None) -> list[MemberPlan]:
    """One plan per member: the engines listen on the wildcard address at the listener's port,
    so a backup is ready to serve the moment the address arrives (no ``ip_nonlocal_bind``)."""
    wildcard = replace(settings, listen_host="0.0.0.0")
    return [MemberPlan(role=role, host=host, index=index, vip=vip, vrrp_id=vrrp_id, preempt=preempt,
                       interface=interface, python=python or sys.executable, settings=wildcard, gate=gate)
            for index, host in enumerate(hosts)]


def _text(result: Completed) -> str:
    text = (result.stderr or result.stdout).decode(errors="replace").strip()
    return text or f"exit status {result.exit_status}"
