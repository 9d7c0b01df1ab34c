"""Fixtures for fleet tests: test hosts (network namespaces with their own sshd) and farm
files that list them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testhosts import testhosts  # noqa: E402,F401


def hosts_toml(run: Any, extra: str = "") -> str:
    """``[hosts.hN]`` tables for every host of a test-host run, then ``extra``."""
    lines = []
    for host in run.hosts:
        lines.append(f"[hosts.{host.name}]")
        for key, value in host.spec_fields().items():
            lines.append(f"{key} = {value}" if isinstance(value, int) else f'{key} = "{value}"')
        lines.append("")
    return "\n".join(lines) + extra
