"""`farmhand deploy ROLE`, the workflow: sync, then move the nodes one at a time, or roll back.

1. **Sync.** The role's ``deploy.source`` goes to every host ``plan.release_hosts`` names,
   into ``DEST/releases/<time>`` with ``after`` run there, then ``DEST/current`` switches
   (``farmhand.fleet.sync``, through the controller's drivers: their connections are open).
   A host that fails (rsync, ``after``, the switch) fails the deploy before any node moves,
   and the hosts already switched go back.
2. **Replace.** Each node that runs the old release is replaced through the controller's own
   surge replacement (``Mark.REPLACE``, as `farmhand replace`): a successor starts in
   ``DEST/current``, passes its check and joins the balancer; then the old node drains and
   stops; then the next. ``plan.judge`` says how far each has come.
3. **Roll back** when a successor fails (or a step outlives its deadline): the unfinished
   replacement is taken back (``plan.undo``), every host's ``current`` goes back to the
   previous release, and the nodes already moved are replaced again, now onto it.

Every step is an event (``deploy.*``) and the whole run is a ``DeployReport``; the API starts
a run in the background and the CLI follows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from farmhand.controller.loop import Controller
from farmhand.deploy import plan
from farmhand.errors import FarmhandError
from farmhand.fleet import gather, releases, sync
from farmhand.fleet.gather import HostResult
from farmhand.records import Health, Mark, NodeState
from farmhand.spec.deploy import DeploySpec
from farmhand.spec.models import RoleSpec

log = logging.getLogger(__name__)
POLL = 0.2
"""How often a replacement is looked at (the controller ticks fast while nodes move)."""


class State:
    SYNCING = "syncing"
    REPLACING = "replacing"
    ROLLING_BACK = "rolling back"
    DONE = "done"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"


@dataclass
class DeployReport:
    """A deploy as it goes; ``status`` is set when it ends (0: deployed, 1: not)."""

    role: str
    release: str
    started: float
    state: str = State.SYNCING
    status: int | None = None
    message: str = ""
    hosts: list[HostResult] = field(default_factory=list)
    rollback_hosts: list[HostResult] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    moved_back: list[tuple[str, str]] = field(default_factory=list)
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "release": self.release, "state": self.state, "status": self.status,
                "message": self.message, "started": self.started, "finished": self.finished,
                "hosts": [r.to_json() for r in self.hosts],
                "rollback_hosts": [r.to_json() for r in self.rollback_hosts],
                "moved": [{"from": a, "to": b} for a, b in self.moved],
                "moved_back": [{"from": a, "to": b} for a, b in self.moved_back]}


class DeployFailed(Exception):
    """Inside a run: the reason it stops (turned into the report, never raised out)."""


class Deployer:
    def __init__(self, ctl: Controller, role_name: str, release: str | None = None) -> None:
        role = ctl.spec.roles[role_name]
        assert role.deploy is not None, "checked by the caller"
        self.ctl = ctl
        self.name = role_name
        self.role: RoleSpec = role
        self.deploy: DeploySpec = role.deploy
        self.limits = plan.limits_for(ctl.spec, role)
        self.report = DeployReport(role_name, release or releases.release_name(), ctl.now())

    def __repr__(self) -> str:
        return f"<Deployer {self.name} [{self.report.state} | moved: {len(self.report.moved)}]>"

    # the run ---------------------------------------------------------------------------

    async def run(self) -> DeployReport:
        """The whole deploy; always ends with a report (an unexpected error included)."""
        try:
            return await self._run()
        except Exception as error:
            log.exception("deploy of role %s failed", self.name)
            self.report.state = State.FAILED
            self.report.message = f"deploy stopped by an unexpected error: {error!r}"
            self._note("deploy.failed", self.report.message)
            return self._end(1)

    async def _run(self) -> DeployReport:
        report = self.report
        switched: list[str] = []
        try:
            hosts = self._hosts()
            self._note("deploy.started", f"deploying role {self.name}: release {report.release} "
                       f"from {self.deploy.source} to {self.deploy.dest} on {gather_fold(hosts)}")
            switched = await self._sync(hosts)
            report.state = State.REPLACING
            for old in plan.to_replace(self.name, self.ctl.nodes()):
                progress = await self._replace(old)
                if progress is None:
                    continue
                if progress.phase == plan.Phase.FAILED:
                    raise _Rollback(progress)
                report.moved.append((old, progress.successor or ""))
                self._note("deploy.moved", f"{old} -> {progress.successor}: on release {report.release}", node=progress.successor)
        except _Rollback as failure:
            await self._roll_back(failure.progress, switched)
            return self._end(1)
        except DeployFailed as error:
            report.message = str(error)
            report.state = State.FAILED
            self._note("deploy.failed", f"deploy of role {self.name} failed: {error}")
            return self._end(1)
        report.state = State.DONE
        report.message = (f"role {self.name} runs release {report.release}: "
                          f"{len(report.moved)} node(s) replaced one at a time")
        self._note("deploy.done", report.message)
        return self._end(0)

    def _end(self, status: int) -> DeployReport:
        self.report.status = status
        self.report.finished = self.ctl.now()
        return self.report

    def _hosts(self) -> list[str]:
        views = []
        for name, spec in self.ctl.spec.hosts.items():
            state = self.ctl.host_state(name)
            views.append(plan.HostView(name, spec.driver, state.state == "up", state.drained, spec.labels))
        hosts = plan.release_hosts(self.name, self.role, views, self.ctl.nodes())
        if not hosts:
            raise DeployFailed(f"no host can take role {self.name}'s release (none is up with its labels)")
        unusable = [h for h in hosts if self.ctl.driver(h) is None]
        if unusable:
            reasons = "; ".join(f"{h}: {self.ctl.host_state(h).reason or 'no driver'}" for h in unusable)
            raise DeployFailed(f"{gather_fold(unusable)} cannot be used now ({reasons})")
        return hosts

    def _executors(self, hosts: list[str]) -> dict[str, Any]:
        return {h: self.ctl.driver(h) for h in hosts}

    def options(self, dry_run: bool = False) -> sync.SyncOptions:
        d = self.deploy
        return sync.SyncOptions(delete=d.delete, dry_run=dry_run, excludes=d.excludes, after=d.after, keep=d.keep,
                                after_timeout=d.after_timeout)

    async def _sync(self, hosts: list[str]) -> list[str]:
        """The release on every host and switched; the hosts switched (all of them), or the
        failure after switching the ones that were back."""
        specs = {h: self.ctl.spec.hosts[h] for h in hosts}
        try:
            results = await sync.sync_all(specs, self._executors(hosts), self.deploy.source, self.deploy.dest,
                                          self.options(), self.report.release)
        except FarmhandError as error:
            raise DeployFailed(f"sync failed: {error}") from error
        self.report.hosts = results
        switched = [r.host for r in results if r.status == 0]
        failed = [r for r in results if r.status != 0]
        if failed:
            why = "; ".join(f"{r.host}: {r.error or _last_line(r.output)}" for r in failed)
            if switched:
                self.report.rollback_hosts = await sync.rollback_all(self._executors(switched), self.deploy.dest)
                why += f"; {gather_fold(switched)} switched back to the previous release"
            raise DeployFailed(f"the release did not reach every host, no node was moved ({why})")
        self._note("deploy.synced", f"release {self.report.release} is current on {gather_fold(switched)}")
        return switched

    async def _replace(self, old_id: str) -> plan.Progress | None:
        """One node onto the current release; None when it was gone before its turn."""
        node = self.ctl.node(old_id)
        if node is None or node.state not in (NodeState.STARTING, NodeState.RUNNING) or node.mark != Mark.NONE:
            return None
        self.ctl.mark(old_id, Mark.REPLACE)
        self.ctl.note("node.replace", f"{old_id}: replacement requested (deploy of release {self.report.release})",
                      self.name, old_id)
        progress = plan.Progress(old_id, self.ctl.now())
        while True:
            if self.ctl.shutting_down or self.ctl.stopped.is_set():
                return plan.Progress(old_id, progress.marked_at, plan.Phase.FAILED, progress.successor,
                                     reason="the farm is stopping")
            nodes = {n.id: n for n in self.ctl.nodes() if n.role == self.name}
            health = self._health(nodes)
            progress = plan.judge(progress, nodes, health, self.ctl.now(), self.limits)
            if progress.phase in (plan.Phase.DONE, plan.Phase.FAILED):
                return progress
            await asyncio.sleep(POLL)

    def _health(self, nodes: dict[str, Any]) -> dict[str, Health]:
        if self.role.health is None:
            return {}
        return {node_id: self.ctl.health(node_id).status for node_id in nodes}

    async def _roll_back(self, failed: plan.Progress, switched: list[str]) -> None:
        report = self.report
        report.state = State.ROLLING_BACK
        nodes = {n.id: n for n in self.ctl.nodes() if n.role == self.name}
        undo = plan.undo(failed, nodes)
        for node_id in undo.keep:  # the old node serves on, as it did
            self.ctl.mark(node_id, Mark.NONE)
        for node_id in undo.remove:  # the successor that never got ready goes
            self.ctl.mark(node_id, Mark.REMOVE)
        self._note("deploy.failed", f"deploy of role {self.name} stopped: {failed.reason}; rolling back to the "
                   "previous release", node=failed.successor)
        report.rollback_hosts = await sync.rollback_all(self._executors(switched), self.deploy.dest)
        stuck = [r for r in report.rollback_hosts if r.status != 0]
        back = [new for _, new in report.moved] + list(undo.move_back)
        problems = []
        if stuck:
            problems.append("not rolled back on " + "; ".join(
                f"{r.host}: {r.error or _last_line(r.output)}" for r in stuck))
        self._note("deploy.rollback", f"{gather_fold(switched)}: current is the previous release again"
                   + (f" ({problems[0]})" if problems else "")
                   + (f"; moving {len(back)} node(s) back onto it" if back else ""))
        for node_id in back:
            progress = await self._replace(node_id)
            if progress is None:
                continue
            if progress.phase == plan.Phase.FAILED:
                problems.append(f"moving {node_id} back failed: {progress.reason}")
                break
            report.moved_back.append((node_id, progress.successor or ""))
            self._note("deploy.moved_back", f"{node_id} -> {progress.successor}: back on the previous release",
                       node=progress.successor)
        report.state = State.ROLLED_BACK if not problems else State.FAILED
        report.message = f"deploy of release {report.release} failed: {failed.reason}; " + (
            "rolled back: every host and node is on the previous release" if not problems
            else "rollback incomplete: " + "; ".join(problems))
        self._note("deploy.rolled_back" if not problems else "deploy.rollback_failed", report.message)

    def _note(self, kind: str, message: str, node: str | None = None) -> None:
        self.ctl.note(kind, message, self.name, node)


class _Rollback(Exception):
    def __init__(self, progress: plan.Progress) -> None:
        super().__init__(progress.reason)
        self.progress = progress


def gather_fold(hosts: list[str]) -> str:
    from farmhand.fleet import targets

    return targets.fold(hosts) if hosts else "no host"


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "failed"


async def dry_run(ctl: Controller, role_name: str) -> dict[str, Any]:
    """What a deploy would do, changing nothing: rsync's list of changes against each host's
    current release, and the nodes that would be replaced, in order."""
    deployer = Deployer(ctl, role_name)
    started = time.monotonic()
    try:
        hosts = deployer._hosts()
    except DeployFailed as error:
        return {"role": role_name, "dry_run": True, "status": 1, "message": str(error), "hosts": [], "replace": []}
    specs = {h: ctl.spec.hosts[h] for h in hosts}
    try:
        results = await sync.sync_all(specs, deployer._executors(hosts), deployer.deploy.source, deployer.deploy.dest,
                                      deployer.options(dry_run=True), deployer.report.release)
    except FarmhandError as error:
        return {"role": role_name, "dry_run": True, "status": 1, "message": f"sync failed: {error}", "hosts": [],
                "replace": []}
    order = plan.to_replace(role_name, ctl.nodes())
    return {"role": role_name, "dry_run": True, "status": gather.exit_status(results),
            "message": f"would send {deployer.deploy.source} to {gather_fold(hosts)} and replace "
                       f"{len(order)} node(s) one at a time", "hosts": [r.to_json() for r in results],
            "replace": order, "limits": {"appear": deployer.limits.appear, "ready": deployer.limits.ready,
                                         "leave": deployer.limits.leave},
            "seconds": round(time.monotonic() - started, 3)}
