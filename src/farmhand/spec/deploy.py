"""``[roles.NAME.deploy]``: where a role's release comes from and where it lands on its hosts.

    [roles.web.deploy]
    source = "app/"          # a folder here (relative: to the farm file's folder)
    dest = "/srv/web"        # on each host: DEST/releases/<time> and the link DEST/current
    keep = 5                 # releases kept per host
    after = "make cache"     # run in the new release on each host before its switch

A role with a deploy table runs its nodes in ``DEST/current`` (or in ``workdir`` taken inside
it, when ``workdir`` is relative): a node started after the switch runs the new release, one
started before keeps the release it started in (a process keeps its working directory), so
`farmhand deploy` can move nodes one at a time. ``{host}`` in DEST stands for each host's
name, as in `farmhand sync`: hosts that share a file system each get a folder of their own.
"""

from __future__ import annotations

import posixpath

from pydantic import Field, StrictInt, field_validator

from farmhand.spec.types import Duration, Strict

HOST_PLACEHOLDER = "{host}"


class DeploySpec(Strict):
    source: str
    """A local folder whose contents make a release (relative: to the farm file's folder)."""
    dest: str
    """An absolute path on each host; may hold ``{host}`` (the host's name)."""
    keep: StrictInt = Field(default=5, ge=2, le=1000)
    """Releases kept per host; at least 2, so a rollback always has one to go back to."""
    after: str | None = None
    """A command run in the new release on each host before its switch (RELEASE and DEST set)."""
    after_timeout: Duration = 600.0
    excludes: tuple[str, ...] = ()
    """rsync exclude patterns."""
    delete: bool = True
    """Files gone from the source are gone from the release (it starts as a copy of the last)."""

    @field_validator("source")
    @classmethod
    def _source_given(cls, value: str) -> str:
        if not value.strip() or "\0" in value:
            raise ValueError("source must name a folder (the release's contents)")
        return value

    @field_validator("dest")
    @classmethod
    def _dest_absolute(cls, value: str) -> str:
        if "\0" in value or "\n" in value:
            raise ValueError("dest contains a NUL or newline character")
        if not value.startswith("/"):
            raise ValueError(f'dest "{value}" must be an absolute path on the hosts (such as "/srv/web")')
        if posixpath.normpath(value) == "/":
            raise ValueError("dest cannot be / (releases and the current link are made inside it)")
        rest = value.replace(HOST_PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f'dest "{value}": the only placeholder is {{host}}')
        return value.rstrip("/")

    @field_validator("after")
    @classmethod
    def _after_given(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\0" in value):
            raise ValueError("after must be a command (or left out)")
        return value

    def current(self) -> str:
        """The link nodes run in (``{host}`` still in it)."""
        return f"{self.dest}/current"


def check_workdir(workdir: str | None) -> None:
    """With a deploy table, a node runs inside the release: an absolute workdir would not."""
    if workdir is not None and workdir.startswith("/"):
        raise ValueError(f'workdir "{workdir}" is absolute, but a role with a deploy table runs in '
                         "its release: leave workdir out (DEST/current) or make it relative to the release")


def release_workdir(deploy: DeploySpec, workdir: str | None) -> str:
    """The workdir a deploy role's nodes get: DEST/current, or a relative workdir inside it."""
    base = deploy.current()
    if not workdir or workdir in (".", "./"):
        return base
    return posixpath.normpath(posixpath.join(base, workdir))


def host_dest(dest: str, host: str) -> str:
    """DEST (or a path under it) on host ``host``."""
    return dest.replace(HOST_PLACEHOLDER, host)


def workdir_on(workdir: str | None, deploy: DeploySpec | None, host: str) -> str | None:
    """A node's workdir on host ``host``: for a deploy role, its ``{host}`` filled in."""
    if deploy is None or workdir is None:
        return workdir
    return host_dest(workdir, host)
