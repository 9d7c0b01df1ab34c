"""The gate as a data-plane process in front of aiosmtpd backends: delays, refusals, relaying,
balancing, control channel, metrics, adoption and leaks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gate_fixtures import CLIENT, Dns
from gate_peers import SmtpBackend, deliver, talk_early, wait_for

from farmhand.dataplane import Backend
from farmhand.gate.dataplane import GateDataPlane
from farmhand.gate.proxy import paths
from farmhand.spec.models import LbSpec

pytestmark = pytest.mark.slow

DELAYS = {"static": 0.3, "dynamic": 0.5, "mismatch": 0.7, "no_ptr": 0.9}
MakeGate = Callable[..., Awaitable[GateDataPlane]]


def gate_spec(dns: Dns, listen: str = "127.0.0.1:0", **options: Any) -> LbSpec:
    return LbSpec.model_validate(spec_data(dns, listen, **options))


def spec_data(dns: Dns, listen: str = "127.0.0.1:0", **options: Any) -> dict[str, Any]:
    """The ``[roles.mx.lb]`` table as a farm file would say it."""
    return {
        "listen": listen, "mode": "tcp", "gate": "smtp-delay", "drain_timeout": "2s",
        "gate_options": {
            "static_delay": "300ms", "dynamic_delay": "500ms", "mismatch_delay": "700ms",
            "no_ptr_delay": "900ms", "dns_server": f"{dns.ip}:{dns.port}", "dns_timeout": "2s",
            "pass_cache_ttl": "0s", "reject_drain": "2s", **options,
        },
    }


@pytest.fixture
def state_dir() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="fg", dir="/tmp"))
    try:
        yield folder
    finally:
        try:
            pid = int(paths(folder, "mx")[1].read_text())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def make_gate(dns_server: Dns, state_dir: Path) -> AsyncIterator[MakeGate]:
    planes: list[GateDataPlane] = []

    async def make(listen: str = "127.0.0.1:0", **options: Any) -> GateDataPlane:
        plane = GateDataPlane("mx", gate_spec(dns_server, listen, **options), state_dir)
        planes.append(plane)
        await plane.ensure_running()
        return plane

    try:
        yield make
    finally:
        for plane in planes:
            await plane.stop()


@pytest.fixture
async def backends() -> AsyncIterator[list[SmtpBackend]]:
    started = [await SmtpBackend(name).start() for name in ("a", "b")]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


def wanted(*servers: SmtpBackend, drain: tuple[str, ...] = ()) -> list[Backend]:
    return [Backend(s.name, "127.0.0.1", s.port, state="drain" if s.name in drain else "ready") for s in servers]


async def test_polite_clients_wait_their_class_delay_and_reach_the_backend(make_gate, backends) -> None:
    gate = await make_gate()
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    for klass in ("static", "dynamic", "mismatch", "no_ptr"):
        waited, banner = await asyncio.to_thread(deliver, host, port, CLIENT[klass], klass)
        assert waited >= DELAYS[klass]
        assert b"a.backend.test" in banner  # the backend's own banner, passed through
    assert [mail.split(b"\r\n")[0] for mail in backends[0].mails] == [
        b"Subject: static", b"Subject: dynamic", b"Subject: mismatch", b"Subject: no_ptr"]
    stats = await gate.stats()
    for klass in ("static", "dynamic", "mismatch", "no_ptr"):
        assert stats["classes"][klass] == {"seen": 1, "passed": 1, "early_talkers": 0, "hung_up": 0}


@pytest.mark.parametrize(("permanent", "code"), [(False, b"451 4.7.1 "), (True, b"553 5.7.1 ")])
async def test_early_talkers_are_refused_by_the_gate(make_gate, backends, permanent, code) -> None:
    gate = await make_gate(permanent=permanent)
    await gate.set_backends(wanted(*backends))
    host, port = await gate.address()
    answer = await talk_early(host, port, CLIENT["dynamic"], b"EHLO bot\r\nMAIL FROM:<x@bot.test>\r\n" + b"Z" * 100_000)
    assert answer.startswith(code + b"Too early")
    # counted once DNS has classed it (the refusal does not wait for DNS)
    await wait_for(lambda: _counted(gate, "dynamic", "early_talkers", 1), what="the talker counted")
    assert all(backend.connections == 0 for backend in backends)


async def test_only_polite_mail_reaches_the_backend(make_gate, backends) -> None:
    gate = await make_gate()
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    polite = [asyncio.to_thread(deliver, host, port, CLIENT["static"], f"polite {n}") for n in range(3)]
    rude = [talk_early(host, port, CLIENT["no_ptr"], b"HELO bot\r\nMAIL FROM:<spam@bot.test>\r\n") for _ in range(3)]
    results = await asyncio.gather(*polite, *rude)
    assert all(answer.startswith(b"451 ") for answer in results[3:])
    assert sorted(m.split(b"\r\n")[0] for m in backends[0].mails) == [b"Subject: polite 0", b"Subject: polite 1",
                                                                       b"Subject: polite 2"]
    assert backends[0].connections == 3


async def test_round_robin_retries_a_refusing_backend_and_honours_drain(make_gate, backends) -> None:
    gate = await make_gate(allowlist=["127.0.0.1/32"])
    dead = Backend("dead", "127.0.0.1", _closed_port())
    await gate.set_backends([dead, *wanted(*backends)])
    host, port = await gate.address()
    for n in range(4):
        await asyncio.to_thread(deliver, host, port, "127.0.0.1", f"rr {n}")
    assert [len(b.mails) for b in backends] == [2, 2]
    stats = await gate.stats()
    assert stats["backends"]["dead"]["connect_failures"] >= 1 and stats["backends"]["dead"]["relayed"] == 0
    assert stats["classes"]["allowlisted"]["passed"] == 4
    await gate.set_backends(wanted(*backends, drain=("b",)))
    for n in range(2):
        await asyncio.to_thread(deliver, host, port, "127.0.0.1", f"drained {n}")
    assert [len(b.mails) for b in backends] == [4, 2]


async def test_active_counts_connections_in_flight(make_gate, backends) -> None:
    gate = await make_gate(allowlist=["127.0.0.0/24"])
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        assert (await reader.readline()).startswith(b"220 a.backend.test")
        assert await gate.active("a") == 1
        await gate.set_backends([])  # removed from the wanted set, still counted until it ends
        assert await gate.active("a") == 1
        writer.write(b"QUIT\r\n")
        assert (await reader.readline()).startswith(b"221")
    finally:
        writer.close()
    await wait_for(lambda: _active_is_zero(gate), what="active to drop to 0")
    assert (await gate.stats())["backends"] == {}


async def _active_is_zero(gate: GateDataPlane) -> bool:
    return await gate.active("a") == 0


async def test_no_backend_answers_421(make_gate) -> None:
    gate = await make_gate(allowlist=["127.0.0.1"])
    await gate.set_backends([Backend("dead", "127.0.0.1", _closed_port())])
    host, port = await gate.address()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        assert (await reader.read()).startswith(b"421 ")
    finally:
        writer.close()


async def test_pass_cache_lets_a_polite_client_skip_the_delay_next_time(make_gate, backends) -> None:
    gate = await make_gate(pass_cache_ttl="1h", no_ptr_delay="2s")
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    first, _ = await asyncio.to_thread(deliver, host, port, CLIENT["no_ptr"], "first")
    assert first >= 2.0
    await asyncio.to_thread(deliver, host, port, CLIENT["no_ptr"], "second")
    stats = await gate.stats()
    assert stats["classes"]["no_ptr"]["passed"] == 1 and stats["classes"]["cached"]["passed"] == 1


async def test_hang_ups_are_counted_and_nothing_is_relayed(make_gate, backends) -> None:
    gate = await make_gate()
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    for _ in range(3):
        _, writer = await asyncio.open_connection(host, port, local_addr=(CLIENT["mismatch"], 0))
        writer.close()
    await wait_for(lambda: _hung_up(gate, "mismatch", 3), what="3 hang-ups")
    assert backends[0].connections == 0


async def _hung_up(gate: GateDataPlane, klass: str, count: int) -> bool:
    return await _counted(gate, klass, "hung_up", count)


async def _counted(gate: GateDataPlane, klass: str, counter: str, count: int) -> bool:
    return bool((await gate.stats())["classes"][klass][counter] == count)


async def test_prometheus_text_on_the_metrics_port(make_gate, backends) -> None:
    gate = await make_gate(metrics_listen="127.0.0.1:0")
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    await talk_early(host, port, CLIENT["static"])
    await wait_for(lambda: _early(gate), what="the early talker counted")
    identity = await gate._call({"op": "ping"})
    metrics_host, _, metrics_port = identity["metrics"].rpartition(":")
    reader, writer = await asyncio.open_connection(metrics_host, int(metrics_port))
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        text = (await reader.read()).decode()
    finally:
        writer.close()
    assert text.startswith("HTTP/1.1 200 OK")
    assert 'farmhand_gate_early_talkers_total{class="static",role="mx"} 1.0' in text
    assert 'farmhand_gate_seen_total{class="static",role="mx"} 1.0' in text


async def _early(gate: GateDataPlane) -> bool:
    return (await gate.stats())["classes"]["static"]["early_talkers"] == 1


async def test_ipv6_listener(make_gate, backends) -> None:
    gate = await make_gate(listen="[::1]:0")
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    assert host == "::1"
    reader, writer = await asyncio.open_connection("::1", port)
    try:
        writer.write(b"EHLO early\r\n")
        assert (await reader.read()).startswith(b"451 ")
    finally:
        writer.close()
    await wait_for(lambda: _early(gate), what="the ::1 talker counted as static (mx6.polite.test)")


async def test_garbage_half_open_and_instant_close_leak_nothing(make_gate, backends) -> None:
    gate = await make_gate(static_delay="200ms")
    await gate.set_backends(wanted(backends[0]))
    host, port = await gate.address()
    await wait_for(lambda: _settled(gate), what="an idle gate")
    before = (await gate.stats())["process"]
    for _ in range(3):
        writers = []
        for n in range(20):
            reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
            if n % 4 == 0:
                writer.write(os.urandom(512) + b"\x00\xff\r\n")  # garbage at once
            elif n % 4 == 1 and writer.can_write_eof():
                writer.write_eof()  # half-open: our side shut, theirs open
            elif n % 4 == 2:
                writer.transport.abort()  # reset at once
                continue
            writers.append(writer)
        for writer in writers:
            writer.close()
    await wait_for(lambda: _settled(gate), what="every client to be gone")
    # the control connections of earlier stats calls close asynchronously: wait, do not sample
    await wait_for(lambda: _no_more_than(gate, before), what=f"fds and tasks back to {before}")
    assert backends[0].connections == 0


async def _no_more_than(gate: GateDataPlane, before: dict[str, int]) -> bool:
    now = (await gate.stats())["process"]
    return bool(now["fds"] <= before["fds"] and now["tasks"] <= before["tasks"])


async def _settled(gate: GateDataPlane) -> bool:
    stats = await gate.stats()
    return stats["clients"] == 0 and stats["process"]["tasks"] <= 2


async def test_second_handle_adopts_the_running_gate(dns_server: Dns, state_dir: Path) -> None:
    spec = gate_spec(dns_server)
    first = GateDataPlane("mx", spec, state_dir)
    await first.ensure_running()
    try:
        pid = (await first._call({"op": "ping"}))["pid"]
        second = GateDataPlane("mx", spec, state_dir)
        await asyncio.gather(second.ensure_running(), GateDataPlane("mx", spec, state_dir).ensure_running())
        assert (await second._call({"op": "ping"}))["pid"] == pid
        changed = GateDataPlane("mx", gate_spec(dns_server, static_delay="1s"), state_dir)
        await changed.ensure_running()
        identity = await changed._call({"op": "ping"})
        assert identity["pid"] == pid and identity["options_hash"] == changed.config.options_hash()
    finally:
        await first.stop()
    assert not paths(state_dir, "mx")[1].exists()


async def test_gate_survives_the_controller_and_is_adopted(dns_server: Dns, state_dir: Path, backends) -> None:
    spec = gate_spec(dns_server)
    data = json.dumps(spec_data(dns_server))
    controller = textwrap.dedent(f"""
        import asyncio, os, signal
        from pathlib import Path
        from farmhand.gate.dataplane import GateDataPlane
        from farmhand.spec.models import LbSpec
        spec = LbSpec.model_validate_json({data!r})
        async def main():
            plane = GateDataPlane("mx", spec, Path({str(state_dir)!r}))
            await plane.ensure_running()
            print((await plane._call({{"op": "ping"}}))["pid"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # the controller dies without a word
        asyncio.run(main())
    """)
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", controller], capture_output=True,
                                     timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    pid = int(result.stdout.split()[0])
    plane = GateDataPlane("mx", spec, state_dir)
    try:
        await plane.ensure_running()
        assert (await plane._call({"op": "ping"}))["pid"] == pid
        await plane.set_backends(wanted(backends[0]))
        host, port = await plane.address()
        await asyncio.to_thread(deliver, host, port, CLIENT["static"], "after the controller died")
        assert len(backends[0].mails) == 1
    finally:
        await plane.stop()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
