"""``[roles.NAME.deploy]``: its keys, its errors with file:line, and where its nodes run."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.errors import SpecError
from farmhand.spec.deploy import workdir_on
from farmhand.spec.load import load_farm, parse_farm

ROLE = """
[roles.web]
command = "app --port {port}"
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_farm(text, "farm.toml")
    return [str(p) for p in caught.value.problems]


def test_a_deploy_role_runs_in_its_current_release_on_each_host(tmp_path: Path) -> None:
    farm = tmp_path / "farm.toml"
    farm.write_text(ROLE + '[roles.web.deploy]\nsource = "app/"\ndest = "/srv/{host}/web/"\n')
    role = load_farm(farm).roles["web"]
    assert role.deploy is not None
    assert role.deploy.source == str(tmp_path / "app/"), "relative to the farm file"
    assert role.deploy.dest == "/srv/{host}/web" and role.deploy.keep == 5 and role.deploy.delete
    assert role.workdir == "/srv/{host}/web/current"
    assert workdir_on(role.workdir, role.deploy, "h2") == "/srv/h2/web/current"
    assert workdir_on("/x/{host}", None, "h2") == "/x/{host}", "only deploy roles fill {host} in"


def test_a_relative_workdir_is_taken_inside_the_release(tmp_path: Path) -> None:
    farm = tmp_path / "farm.toml"
    farm.write_text(ROLE + 'workdir = "public"\n[roles.web.deploy]\nsource = "/abs/app"\ndest = "/srv/web"\n')
    role = load_farm(farm).roles["web"]
    assert role.workdir == "/srv/web/current/public"
    assert role.deploy is not None and role.deploy.source == "/abs/app"


@pytest.mark.parametrize(("table", "key", "words"), [
    ('source = "app"\ndest = "srv/web"', "roles.web.deploy.dest", "absolute"),
    ('source = "app"\ndest = "/"', "roles.web.deploy.dest", "cannot be /"),
    ('source = "app"\ndest = "/srv/{node}"', "roles.web.deploy.dest", "only placeholder is {host}"),
    ('source = "app"\ndest = "/srv"\nkeep = 1', "roles.web.deploy.keep", "greater than or equal to 2"),
    ('source = "app"\ndest = "/srv"\nkepe = 3', "roles.web.deploy.kepe", "did you mean 'keep'"),
    ('dest = "/srv"', "roles.web.deploy.source", "required"),
    ('source = "app"\ndest = "/srv"\nafter_timeout = 5', "roles.web.deploy.after_timeout", "unit"),
])
def test_bad_deploy_tables_name_the_key_and_line(table: str, key: str, words: str) -> None:
    problems = _problems(ROLE + "[roles.web.deploy]\n" + table + "\n")
    assert len(problems) == 1, problems
    assert problems[0].startswith("farm.toml:") and key in problems[0] and words in problems[0], problems


def test_an_absolute_workdir_cannot_run_a_release() -> None:
    problems = _problems(ROLE + 'workdir = "/opt/app"\n[roles.web.deploy]\nsource = "app"\ndest = "/srv"\n')
    assert any("workdir" in p and "absolute" in p and p.startswith("farm.toml:") for p in problems), problems
