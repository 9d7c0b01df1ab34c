"""Fixtures for the HTTPS tests: a test CA, backends and balancers, always cleaned up."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from farmhand.lb import make_data_plane
from farmhand.spec.models import HealthSpec, LbSpec
from tests.integration.farmkit import free_port
from tests.integration.lb.lb_harness import Backends, kill_engine


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short state folder (Unix socket paths are limited to 107 bytes)."""
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(params=["builtin", "haproxy"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap installs it)")
    return str(request.param)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def backends() -> Iterator[Backends]:
    made = Backends("http")
    yield made
    made.cleanup()


@pytest.fixture
async def plane_factory(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """``make(engine, tls={...}, **lb)``: a handle for role "web" with an HTTPS listener;
    the engine is stopped at the end whatever happened."""
    handles: list[tuple[Any, str]] = []
    port, tls_port = free_port(), free_port()

    def make(engine: str, tls: dict[str, Any], **lb: Any) -> Any:
        spec = LbSpec.model_validate({
            "listen": f"127.0.0.1:{port}", "engine": engine, "workers": lb.pop("workers", 2),
            "drain_timeout": "5s", "connect_timeout": "1s",
            "tls": {"listen": f"127.0.0.1:{tls_port}", **tls}, **lb,
        })
        health = HealthSpec(type="http", interval="100ms", rise=1)
        handle = make_data_plane("web", spec, health, short_tmp)
        handles.append((handle, engine))
        return handle

    make.port = port  # type: ignore[attr-defined]
    make.tls_port = tls_port  # type: ignore[attr-defined]
    make.state_dir = short_tmp  # type: ignore[attr-defined]
    yield make
    for handle, engine in handles[:1]:
        try:
            await handle.stop()
        except BaseException:
            kill_engine(short_tmp / "lb" / "web", engine)
            raise


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()
