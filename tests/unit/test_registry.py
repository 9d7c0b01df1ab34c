"""The registry is the one home of driver and metric names: every name in it is real (a driver
class, a metric reader), and the farm file accepts exactly those names (a name ``check``
accepts never fails ``up``)."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest

from farmhand.controller.readings import RoleSample, reader
from farmhand.dataplane import PlaneStats
from farmhand.drivers import driver_class, fake, make_driver
from farmhand.drivers.base import Driver, NodeMetrics
from farmhand.errors import SpecError
from farmhand.registry import DRIVERS, METRICS, split_entry
from farmhand.spec import parse_farm
from farmhand.spec.models import HostSpec


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_every_registered_driver_imports_and_is_a_driver(name: str) -> None:
    module_name, class_name = split_entry(DRIVERS[name])
    found = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(found, type) and issubclass(found, Driver)
    assert found.kind == name  # the controller compares a driver's kind with the host's driver
    assert driver_class(name) is found


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_the_farm_file_accepts_every_registered_driver(name: str) -> None:
    address = 'address = "127.0.0.1"\n' if name == "ssh" else ""
    spec = parse_farm(f'[hosts.h]\ndriver = "{name}"\n{address}')
    assert spec.hosts["h"].driver == name


def test_an_unknown_driver_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SpecError) as caught:
        parse_farm(textwrap.dedent("""\
            [hosts.h]
            driver = "docker"
            """))
    known = ", ".join(sorted(DRIVERS))
    assert [str(p) for p in caught.value.problems] == [f'farm.toml:2: hosts.h.driver: "docker" is not a driver (known: {known})']


def test_the_fake_driver_is_made_like_any_other(tmp_path: Path) -> None:
    driver = make_driver("sim-1", HostSpec(driver="fake"), tmp_path, "registry-test")
    assert (driver.kind, driver.name) == ("fake", "sim-1")
    fake.forget("registry-test")
    with pytest.raises(ValueError, match="no driver 'nope'"):
        driver_class("nope")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_registered_metric_has_a_reader_that_answers_a_sample(name: str) -> None:
    plane = PlaneStats.parse({"engine": "builtin", "active_connections": 4, "p95_ms": 12.5, "waiting": 1})
    sample = RoleSample(serving=2, nodes=[NodeMetrics(50.0, 8_000_000, 3)] * 2, host_loads=[0.5],
                        plane=plane, request_rate=10.0)
    value = reader(name)(sample)
    assert value is not None and value[1] == 2
    assert reader(name)(RoleSample(0, (), (), None, None)) is None  # nothing measured: no opinion


@pytest.mark.parametrize("name", sorted(METRICS))
def test_the_farm_file_accepts_every_registered_metric(name: str) -> None:
    spec = parse_farm(textwrap.dedent(f"""\
        [roles.web]
        command = "app --port {{port}}"
        min = 1
        max = 4
        lb = {{ listen = "127.0.0.1:9000" }}
        [roles.web.autoscale]
        target = [{{ metric = "{name}", value = 10 }}]
        """))
    autoscale = spec.roles["web"].autoscale
    assert autoscale is not None and autoscale.metric_info(name) is METRICS[name]
