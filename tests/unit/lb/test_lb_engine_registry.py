"""The registry is the one home of load-balancer engine names: every name in it is a real
engine handle, ``make_data_plane`` builds exactly what it names, and the farm file accepts
exactly those names (a name ``check`` accepts never fails ``up``)."""

from __future__ import annotations

import importlib
import inspect
import textwrap
from pathlib import Path

import pytest

from farmhand.dataplane import DataPlane
from farmhand.errors import SpecError
from farmhand.lb import make_data_plane
from farmhand.registry import ENGINES, split_entry
from farmhand.spec import parse_farm
from farmhand.spec.models import LbSpec

CONTRACT = [name for name, member in vars(DataPlane).items() if inspect.iscoroutinefunction(member)]


def engine_class(name: str) -> type:
    module_name, class_name = split_entry(ENGINES[name])
    found = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(found, type)
    return found


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_imports_and_has_the_data_plane_methods(name: str) -> None:
    found = engine_class(name)
    assert sorted(CONTRACT) == ["active", "ensure_running", "set_backends", "stats", "stop"]
    for method in CONTRACT:
        assert inspect.iscoroutinefunction(getattr(found, method)), f"{found.__name__}.{method}"


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_make_data_plane_builds_the_registered_class(name: str, tmp_path: Path) -> None:
    plane = make_data_plane("web", LbSpec(listen="127.0.0.1:8080", engine=name), None, tmp_path)
    assert type(plane) is engine_class(name)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_farm_file_accepts_every_registered_engine(name: str) -> None:
    spec = parse_farm(textwrap.dedent(f"""\
        [roles.web]
        command = "true"
        [roles.web.lb]
        listen = "127.0.0.1:8080"
        engine = "{name}"
        """))
    lb = spec.roles["web"].lb
    assert lb is not None and lb.engine == name


def test_an_unknown_engine_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SpecError) as caught:
        parse_farm(textwrap.dedent("""\
            [roles.web]
            command = "true"
            [roles.web.lb]
            listen = "127.0.0.1:8080"
            engine = "nginx"
            """))
    known = ", ".join(sorted(ENGINES))
    assert [str(p) for p in caught.value.problems] == [
        f'farm.toml:5: roles.web.lb.engine: "nginx" is not a load-balancer engine (known: {known})'
    ]


def test_the_builtin_engine_is_the_default() -> None:
    assert LbSpec(listen="127.0.0.1:8080").engine == "builtin"
    assert "builtin" in ENGINES
