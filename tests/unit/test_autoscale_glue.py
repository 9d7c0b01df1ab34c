"""The autoscaler's glue against a fake host and a fake load balancer: what a sample reads,
how defensive it is about what the sources say, and that a decision reaches the controller."""

from __future__ import annotations

import asyncio
import builtins
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from farmhand.clock import ManualClock
from farmhand.controller.autoscaler import Autoscaler
from farmhand.controller.context import FarmContext
from farmhand.controller.events import EventLog
from farmhand.controller.health import HealthMonitor
from farmhand.controller.planes import DataPlanes
from farmhand.dataplane import Backend
from farmhand.drivers.base import (
    Driver,
    ExecResult,
    HostMetrics,
    NodeLaunch,
    NodeMetrics,
    RunningNode,
)
from farmhand.records import NodeRecord, NodeState, RoleState
from farmhand.spec import parse_farm
from farmhand.store import SqliteStore
from farmhand.store.statedir import StateDir


class FakeHost(Driver):
    kind = "local"

    def __init__(self) -> None:
        self.name, self.address = "local", "127.0.0.1"
        self.metrics: dict[str, NodeMetrics] = {}
        self.load1 = 0.5

    async def node_metrics(self, nodes: builtins.list[RunningNode]) -> dict[str, NodeMetrics]:
        return {n.node_id: self.metrics[n.node_id] for n in nodes if n.node_id in self.metrics}

    async def host_metrics(self) -> HostMetrics:
        return HostMetrics(self.load1, 2, 1 << 30, 1 << 29)

    async def start(self, launch: NodeLaunch) -> RunningNode:
        raise NotImplementedError

    async def signal(self, node: RunningNode, signame: str) -> None:
        raise NotImplementedError

    async def list(self) -> dict[str, RunningNode]:
        return {}

    async def exec(self, command: str, timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
        raise NotImplementedError

    async def put_file(self, data: bytes, path: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    async def read_log(self, node_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return b""

    async def port_is_free(self, port: int) -> bool:
        return True

    async def pick_free_port(self, avoid: set[int]) -> int:
        return 1


class FakeBalancer:
    def __init__(self) -> None:
        self.answer: dict[str, Any] = {}
        self.fail = False

    async def ensure_running(self) -> None: ...
    async def set_backends(self, backends: list[Backend]) -> None: ...
    async def active(self, name: str) -> int:
        return 0

    async def stats(self) -> dict[str, Any]:
        if self.fail:
            raise TimeoutError
        return self.answer

    async def stop(self) -> None: ...


FARM = """\
[roles.web]
command = "app --port {port}"
min = 1
max = 6
lb = { listen = "127.0.0.1:9000" }
[roles.web.autoscale]
scale_up_stabilization = "2s"
window = "0s"  # each sample as read: these tests follow single samples through the glue
target = [{ metric = "requests_per_s", value = 100 }]
"""


class Rig:
    def __init__(self, ctx: FarmContext, host: FakeHost, balancer: FakeBalancer, clock: ManualClock) -> None:
        self.ctx, self.host, self.balancer, self.clock = ctx, host, balancer, clock
        self.applied: list[tuple[str, int, str]] = []
        planes = DataPlanes(ctx.state.path, clock.now, lambda *_: None)
        planes.running = ctx.data_planes  # as the controller does: the planes' stats come parsed
        self.autoscaler = Autoscaler(ctx, lambda *args: self.applied.append(args), lambda: None, planes.stats)

    def serve(self, count: int) -> None:
        for i in range(1, count + 1):
            self.ctx.store.put_node(NodeRecord(f"web-{i}", "web", "local", NodeState.RUNNING, "f", 1.0, 1.0,
                                               port=8000 + i, pid=100 + i, started_at=1.0))

    def lb(self, requests: int, **extra: Any) -> None:
        self.balancer.answer = {"listeners": {"127.0.0.1:9000": {"requests": requests}}, "requests_per_s": 1.0,
                                "active_connections": 3, "p95_ms": None, "waiting": 0, **extra}

    async def sample(self, step: float = 1.0) -> None:
        await self.autoscaler.sampler.sample(self.clock.now())
        self.autoscaler.decide_all(self.clock.now())
        self.clock.advance(step)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    def make(text: str = FARM) -> Rig:
        (tmp_path / "farm.toml").write_text(text)
        clock = ManualClock()
        store = SqliteStore(tmp_path / "farm.db")
        health = HealthMonitor(lambda: None, clock.now)
        ctx = FarmContext(parse_farm(text), tmp_path / "farm.toml", StateDir(tmp_path / ".farmhand"), store, clock,
                          EventLog(store, clock), health)
        host, balancer = FakeHost(), FakeBalancer()
        ctx.drivers["local"] = host
        ctx.data_planes["web"] = balancer
        made.append(Rig(ctx, host, balancer, clock))
        return made[-1]

    made: list[Rig] = []
    yield make  # type: ignore[misc]
    for one in made:
        await one.autoscaler.close()
        await one.ctx.health.close()


async def test_requests_per_second_come_from_the_counters_between_samples(rig: Any) -> None:
    r: Rig = rig()
    r.serve(2)
    r.lb(1000)
    await r.sample()
    assert r.autoscaler.current("web")["requests_per_s"] == 1.0, "first sample: the engine's own figure"
    r.lb(1250)
    await r.sample()
    assert r.autoscaler.current("web")["requests_per_s"] == 250.0
    r.lb(10)  # a worker restarted: its counters start again from zero
    await r.sample()
    assert r.autoscaler.current("web")["requests_per_s"] == 1.0


async def test_requests_piling_up_count_as_arrivals_not_only_answers(rig: Any) -> None:
    """A saturated node answers at its capacity; the requests queueing show the real load."""
    r: Rig = rig()
    r.serve(1)
    r.lb(1000, backends={"web-1": {"active": 5}}, waiting=0)
    await r.sample()
    r.lb(1060, backends={"web-1": {"active": 85}}, waiting=10)
    await r.sample()
    assert r.autoscaler.current("web")["requests_per_s"] == 60 + 80 + 10
    r.lb(1160, backends={"web-1": {"active": 0}}, waiting=0)  # the backlog drains, nothing new comes
    await r.sample()
    assert r.autoscaler.current("web")["requests_per_s"] == 5.0


async def test_node_and_host_metrics_are_averaged_and_in_flight_kept_per_node(rig: Any) -> None:
    r: Rig = rig()
    r.serve(2)
    r.host.metrics = {"web-1": NodeMetrics(80.0, 30_000_000, 4), "web-2": NodeMetrics(40.0, 10_000_000, 2)}
    r.lb(0, backends={"web-1": {"active": 7}})  # web-2 not in the balancer yet
    await r.sample()
    current = r.autoscaler.current("web")
    assert {k: current[k] for k in ("cpu", "rss_mb", "connections", "load1")} == {
        "cpu": 60.0, "rss_mb": 20.0, "connections": 3.0, "load1": 0.5}
    assert r.autoscaler.node_current("web-1") == {"cpu": 80.0, "rss_mb": 30.0, "connections": 4, "in_flight": 7}
    assert r.autoscaler.node_load() == {"web-1": 7, "web-2": 40.0}, "in flight when known, else CPU"


@pytest.mark.parametrize("answer", [{}, {"listeners": "x", "p95_ms": "fast", "waiting": True}, {"listeners": {"a": 1}}])
async def test_odd_answers_from_a_balancer_leave_metrics_out(rig: Any, answer: dict[str, Any]) -> None:
    r: Rig = rig()
    r.serve(1)
    r.balancer.answer = answer
    await r.sample()
    assert not {"requests_per_s", "p95_ms", "waiting"} & r.autoscaler.current("web").keys()


async def test_an_overload_reaches_the_controller_with_its_reason_after_the_up_window(rig: Any) -> None:
    r: Rig = rig()
    r.serve(1)
    r.ctx.store.put_role(RoleState("web", wanted=1, wanted_by="scale", file_bounds="min=1,max=6"))
    r.lb(0)
    await r.sample()  # the engine's own figure: 1 req/s
    r.lb(300)
    await r.sample()
    assert r.applied == [], "one sample of overload is not enough"
    r.lb(600)
    await r.sample()
    assert r.applied == [("web", 3, "web 1 -> 3: 300 req/s per node > target 100")]
    assert r.autoscaler.decisions["web"].changed


async def test_a_silent_balancer_is_no_reason_to_scale_in(rig: Any) -> None:
    r: Rig = rig(FARM.replace('"2s"', '"0s"\nscale_down_stabilization = "0s"'))
    r.serve(3)
    r.ctx.store.put_role(RoleState("web", wanted=3, wanted_by="scale", file_bounds="min=1,max=6"))
    r.lb(0, requests_per_s=300.0)
    await r.sample()
    r.balancer.fail = True
    for _ in range(10):
        await r.sample()
    assert r.applied == [] and "no readings yet" in r.autoscaler.decisions["web"].reason


@pytest.fixture
def exporter() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = textwrap.dedent("""\
                # TYPE jobs_waiting gauge
                jobs_waiting{queue="mail"} 12
                jobs_waiting{queue="mail",shard="2"} 5
                jobs_waiting{queue="sms"} 100
                """).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()


async def settle_externals(r: Rig, rounds: int = 3) -> None:
    """Externals are fetched in the background: sample, let the fetch finish, sample again."""
    for _ in range(rounds):
        await r.sample()
        await asyncio.gather(*r.autoscaler.sampler._external.values(), return_exceptions=True)


async def test_external_metrics_from_prometheus_text_and_from_a_command(rig: Any, exporter: str) -> None:
    text = FARM + textwrap.dedent(f"""\
        [roles.web.autoscale.external.mail]
        prometheus = "{exporter}"
        metric = "jobs_waiting"
        labels = {{ queue = "mail" }}
        [roles.web.autoscale.external.backlog]
        command = "echo 'backlog:'; echo 42.5"
        """)
    r: Rig = rig(text)
    r.serve(1)
    await settle_externals(r)
    current = r.autoscaler.current("web")
    assert current["mail"] == 17.0, "the series whose labels match, summed"
    assert current["backlog"] == 42.5


async def test_an_external_metric_that_fails_is_an_event_once_and_left_out(rig: Any) -> None:
    text = FARM + '[roles.web.autoscale.external.q]\ncommand = "echo nope >&2; exit 3"\n'
    r: Rig = rig(text)
    r.serve(1)
    await settle_externals(r, rounds=4)
    events = [e.message for e in r.ctx.events.recent() if e.kind == "autoscale.metric"]
    assert events == ["role web: metric q cannot be read: `echo nope >&2; exit 3` exited 3: nope"]
    assert "q" not in r.autoscaler.current("web")
