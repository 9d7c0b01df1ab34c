"""`farmhand sync` and `rollback` on test hosts: releases, the atomic `current` switch, a
second sync, rollback, an `after` command that fails on one host, dry runs and excludes.

The test hosts share this machine's file system, so DEST holds ``{host}`` (each host's own
folder, inside its base directory, which its login user owns)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import Farm
from tests.integration.fleet.conftest import hosts_toml

pytestmark = pytest.mark.slow


def _tree(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "static").mkdir(exist_ok=True)
    (folder / "app.txt").write_text(f"version {version}\n")
    (folder / "static" / "logo.txt").write_text("logo\n")
    (folder / "secret.env").write_text("do not ship\n")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _current(run: Any, host: str) -> Path:
    return run.dir / host / "base" / "app" / "current"


def test_sync_second_sync_rollback_and_a_failing_after(make_farm: Callable[..., Farm], testhosts: Any,
                                                       tmp_path: Path) -> None:
    run = testhosts(3)
    farm = make_farm(hosts_toml(run))
    source = _tree(tmp_path / "src", "1")
    tmp_path.chmod(0o755)
    dest = f"{run.dir}/{{host}}/base/app"
    first = json.loads(farm.cli("sync", "h[1-3]", str(source), dest, "--exclude", "*.env", "--json").stdout)
    assert first["status"] == 0, first
    release_1 = {os.readlink(_current(run, h.name)) for h in run.hosts}
    assert len(release_1) == 1, "one release name on every host"
    for host in run.hosts:
        assert (_current(run, host.name) / "app.txt").read_text() == "version 1\n"
        assert not (_current(run, host.name) / "secret.env").exists(), "excluded"

    _tree(source, "2")
    farm.cli("sync", "h[1-3]", str(source), dest, "--exclude", "*.env", "--after", "grep -q 'version 2' app.txt")
    release_2 = {os.readlink(_current(run, h.name)) for h in run.hosts}
    assert len(release_2) == 1 and release_2 != release_1
    assert all((_current(run, h.name) / "app.txt").read_text() == "version 2\n" for h in run.hosts)

    rolled = farm.cli("rollback", "h[1-3]", dest)
    assert "h[1-3] (3)" in rolled.stdout
    assert {os.readlink(_current(run, h.name)) for h in run.hosts} == release_1
    assert all((_current(run, h.name) / "app.txt").read_text() == "version 1\n" for h in run.hosts)

    _tree(source, "3")
    slow = run.host("h2").address
    after = f'case "$SSH_CONNECTION" in *" {slow} "*) echo cache clear failed; exit 7;; esac'
    failed = farm.cli("sync", "h[1-3]", str(source), dest, "--after", after, check=False)
    assert failed.returncode == 7, failed.stdout + failed.stderr
    assert "after failed (exit 7), not switched" in failed.stdout
    assert "exit 7: h2" in failed.stderr
    assert (_current(run, "h2") / "app.txt").read_text() == "version 1\n", "h2 is left where it was"
    assert {os.readlink(_current(run, "h2"))} == release_1
    for host in ("h1", "h3"):
        assert (_current(run, host) / "app.txt").read_text() == "version 3\n"
    releases_h2 = sorted(p.name for p in (run.dir / "h2" / "base" / "app" / "releases").iterdir())
    assert len(releases_h2) == 2, "h2's failed release is removed again"


def test_dry_run_changes_nothing_and_keep_prunes_old_releases(make_farm: Callable[..., Farm], testhosts: Any,
                                                              tmp_path: Path) -> None:
    run = testhosts(2)
    farm = make_farm(hosts_toml(run))
    tmp_path.chmod(0o755)
    source = _tree(tmp_path / "src", "1")
    dest = f"{run.dir}/{{host}}/base/app"
    farm.cli("sync", "h[1-2]", str(source), dest)
    linked = os.readlink(_current(run, "h1"))
    _tree(source, "2")
    dry = farm.cli("sync", "h[1-2]", str(source), dest, "--dry-run")
    assert "app.txt" in dry.stdout
    assert os.readlink(_current(run, "h1")) == linked, "a dry run switches nothing"
    for _ in range(3):
        farm.cli("sync", "h[1-2]", str(source), dest, "--keep", "2", "--delete")
    releases = list((run.dir / "h1" / "base" / "app" / "releases").iterdir())
    assert len(releases) == 2
    assert (_current(run, "h1") / "app.txt").read_text() == "version 2\n"
