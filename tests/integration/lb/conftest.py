"""Fixtures for the load-balancer scenarios: backends and an engine, always cleaned up."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lb_harness import Backends, free_port, kill_engine

from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short state folder (Unix socket paths are limited to 107 bytes)."""
    return tmp_path_factory.mktemp("lb")


@pytest.fixture(params=["builtin", "haproxy"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap installs it)")
    return str(request.param)


@pytest.fixture
def backends_factory() -> Iterator[Callable[[str], Backends]]:
    made: list[Backends] = []

    def make(mode: str) -> Backends:
        backends = Backends(mode)
        made.append(backends)
        return backends

    yield make
    for backends in made:
        backends.cleanup()


@pytest.fixture
async def plane_factory(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Makes data-plane handles for one role in one state folder; stops the engine at the end."""
    handles: list[tuple[Any, str]] = []
    port = free_port()

    def make(engine: str, mode: str, **lb: Any) -> Any:
        spec = LbSpec(
            listen=f"127.0.0.1:{port}", mode=mode, engine=engine, workers=lb.pop("workers", 2),
            drain_timeout="5s", connect_timeout="1s", **lb,
        )
        health = HealthSpec(type="http" if mode == "http" else "tcp", interval="100ms", rise=1)
        handle = make_data_plane("web", spec, health, short_tmp)
        handles.append((handle, engine))
        return handle

    yield make
    run_dir = short_tmp / "lb" / "web"
    for handle, engine in handles[:1]:  # one engine per role, whichever handle started it
        try:
            await handle.stop()
        except BaseException:
            kill_engine(run_dir, engine)
            raise
