"""Issue 10 #3: one load balancer per address. A second farm's balancer on the same address
fails with "address in use" naming the first, and the first keeps all the traffic.

Before the fix both engines shared the port (the builtin engine's workers and HAProxy set
SO_REUSEPORT), and the clients were answered by both farms.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from lb_harness import Backends, HttpLoad, engine_pids, free_port, kill_engine

from farmhand.dataplane import Backend
from farmhand.errors import LbError
from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec

pytestmark = pytest.mark.slow

PAIRS = [("builtin", "builtin"), ("haproxy", "haproxy"), ("builtin", "haproxy"), ("haproxy", "builtin")]


@pytest.mark.parametrize(("first_engine", "second_engine"), PAIRS, ids=["-".join(p) for p in PAIRS])
async def test_a_second_balancer_on_the_same_address_fails_and_names_the_first(
    first_engine: str, second_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if "haproxy" in (first_engine, second_engine) and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap installs it)")
    port = free_port()
    farms = [tmp_path_factory.mktemp("lbx"), tmp_path_factory.mktemp("lby")]
    roles = [("alpha", first_engine), ("beta", second_engine)]
    backends = [Backends("http"), Backends("http")]
    planes = [
        make_data_plane(role, LbSpec(listen=f"127.0.0.1:{port}", engine=engine, workers=2),  # type: ignore[arg-type]
                        HealthSpec(interval="100ms"), state)
        for (role, engine), state in zip(roles, farms, strict=True)
    ]
    try:
        [node_a] = await backends[0].start(1)
        [node_b] = await backends[1].start(1)
        first, second = planes
        await first.ensure_running()
        await first.set_backends([Backend(node_a.name, "127.0.0.1", node_a.port)])
        with pytest.raises(LbError) as failure:
            await second.ensure_running()
        message = str(failure.value)
        assert "address in use" in message
        assert "'alpha'" in message, message  # the holder, by role ...
        first_dir = first.run_dir.resolve()
        assert str(first_dir) in message, message  # ... and by its folder
        assert engine_pids(Path(second.run_dir), second_engine) == [] or second_engine == "builtin"
        with contextlib.suppress(LbError):  # nothing of the second may serve; harmless if none
            await second.set_backends([Backend(node_b.name, "127.0.0.1", node_b.port)])

        load = HttpLoad(port, concurrency=4)
        load.start()
        await load.more(300)
        stats = await load.stop()
        assert stats.failed == 0, stats.errors[:5]
        assert set(stats.by_backend) == {node_a.name}, f"the second farm answered: {stats.by_backend}"
    finally:
        for plane, state, (role, engine) in zip(planes, farms, roles, strict=True):
            try:
                await plane.stop()
            except BaseException:
                kill_engine(state / "lb" / role, engine)
                raise
        for made in backends:
            made.cleanup()
