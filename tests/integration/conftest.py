from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.farmkit import Farm


@pytest.fixture
def make_farm(tmp_path: Path) -> Iterator[Callable[[str], Farm]]:
    """Make farms in a temp folder; every process they start is gone after the test."""
    farms: list[Farm] = []

    def make(farm_toml: str, name: str = "farm") -> Farm:
        farm = Farm(tmp_path / name, farm_toml)
        farms.append(farm)
        return farm

    try:
        yield make
    finally:
        for farm in farms:
            farm.cleanup()
