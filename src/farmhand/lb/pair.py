"""A role's load balancer as a pair (or more) of members behind a floating address: the
``DataPlane`` the controller holds for ``[roles.R.lb]`` with ``hosts`` and ``vip``. The SMTP
gate (``gate = "smtp-delay"``) runs as a pair the same way: the gate process on each member
instead of an engine, steered through its control socket like the builtin engine.

Every call fans out to all members at once (``lb/placed.py``: the builtin engine, a watcher
and keepalived on each host), so every member always has the same, whole backend set and
keeps serving with it when the controller is gone. A member that does not answer never holds
the others up: calls succeed when one member took them, and the member is repaired in the
background (its engine started again where it died, keepalived and the watcher too) and
given the current set. keepalived moves the address; with ``nopreempt`` (the default) a
repaired member comes back as a backup and the address does not move again.

``stats()`` answers the serving member's stats (the one holding the address, else the first
that answers) plus ``"pair"``::

    "pair": {"vip": "10.213.0.100", "holder": "lb2" | None,
             "members": {"lb1": {"state": "MASTER" | "BACKUP" | "FAULT" | "STOP" | "unknown",
                                 "since": float | None, "balancer": "running" | "down" | "unknown",
                                 "reachable": bool, "error": str | None,
                                 "holds_vip": bool | None}, ...}}

An HTTPS listener (``lb.tls``) works the same way: the controller keeps the certificates
(``farmhand.certs``, ``controller/certs.py``: user files or ACME), every member gets a copy
in its own folder (0600) before its engine starts, and ``set_tls`` copies new contents to
all members and has each engine load them live; ``set_challenges`` gives ACME's HTTP-01
answers to every member, so whichever holds the address answers the ACME server.

Moves of the address become events (``take_events``): who holds it now, since when, and why
the last holder let go (its balancer stopped, its host went out of reach, or it went FAULT).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farmhand.dataplane import Backend
from farmhand.errors import FarmhandError, LbError
from farmhand.lb.placed import PlacedMember, plan_members
from farmhand.lb.settings import EngineSettings, TlsSettings
from farmhand.spec.lbpair import default_vrrp_id

if TYPE_CHECKING:
    from farmhand.spec.models import HealthSpec, LbSpec

MEMBER_TIMEOUT = 2.5
"""Longest one member may take to answer a call before the others' answers are used."""
TLS_TIMEOUT = 15.0
"""Longest one member may take to copy and load new certificates (a script over SSH, and for
HAProxy one handle process on the host)."""
STATS_TIMEOUT = 1.5


@dataclass
class MemberView:
    """What the pair last learned of one member."""

    state: str = "unknown"
    since: float | None = None
    balancer: str = "unknown"
    reachable: bool = False
    error: str | None = None
    holds: bool | None = None
    """Whether the address is on the member's interface (None: not read yet)."""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "balancer": self.balancer,
                "reachable": self.reachable, "error": self.error, "holds_vip": self.holds}

    @property
    def holding(self) -> bool:
        """Holds the address: by the interface when read, else by keepalived's last state."""
        return self.reachable and (self.holds if self.holds is not None else self.state == "MASTER")


class PairDataPlane:
    """``DataPlane`` for a role whose balancer names ``hosts`` and a ``vip``."""

    def __init__(self, role: str, lb: LbSpec, health: HealthSpec | None, state_dir: Path,
                 gate: dict[str, Any] | None = None) -> None:
        if not lb.is_pair or lb.vip is None:
            raise ValueError("PairDataPlane needs an lb table with hosts and vip")
        missing = [name for name in lb.hosts if name not in lb.member_hosts]
        if missing:
            raise LbError(f"role {role}: pair hosts {', '.join(missing)} are not in [hosts]")
        self.role = role
        self.vip = lb.vip_address
        tls = None
        if lb.tls is not None:  # installed under the controller's state folder, copied to members
            from farmhand.lb.tls import settings_for

            tls = settings_for(role, lb.tls, state_dir)
        settings = EngineSettings.from_spec(role, lb, health, tls)
        self.settings = settings
        """The engine's settings as the controller sees them (``settings.tls``: the
        certificates under its state folder, read by ``controller/certs.py``)."""
        self.engine = "gate" if gate is not None else settings.engine
        """What runs on the members: an engine's name, or "gate" (the SMTP gate, ``gate``
        its configuration from ``farmhand.gate.dataplane.member_config``)."""
        farm_id = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]  # StateDir.farm_id
        plans = plan_members(role, settings, hosts=lb.hosts, vip=lb.vip, vrrp_id=lb.vrrp_id or default_vrrp_id(role),
                             preempt=lb.preempt, interface=lb.interface, python=lb.python, gate=gate)
        self.members = {plan.host: PlacedMember(plan, lb.member_hosts[plan.host], farm_id) for plan in plans}
        self.views = {name: MemberView() for name in self.members}
        self._wanted: list[Backend] | None = None
        self._challenges: dict[str, str] = {}
        self._healthy: set[str] = set()
        self._repairing: asyncio.Task[None] | None = None
        self._holder: str | None = None
        self._holder_known = False
        self._last_holder: str | None = None
        self._let_go = "unknown"
        """Why the last holder let the address go, as seen when it did."""
        self._unheld_reads = 0
        self._events: list[tuple[str, str]] = []
        self._stopping = False
        """Set by ``stop``: a stats read still in flight must not repair (restart) a member
        that is being stopped."""

    def __repr__(self) -> str:
        return f"<PairDataPlane {self.role} vip {self.vip} [holder: {self._holder} | members: {', '.join(self.members)}]>"

    # -- the DataPlane contract ---------------------------------------------------------------

    async def ensure_running(self) -> bool:
        self._stopping = False
        results = await asyncio.gather(*(self._ensure_member(m) for m in self.members.values()), return_exceptions=True)
        errors = {name: r for name, r in zip(self.members, results, strict=True) if isinstance(r, BaseException)}
        for name, error in errors.items():
            if not isinstance(error, FarmhandError):
                raise error
            self._note_error(name, error)
        if len(errors) == len(self.members):
            raise LbError("; ".join(str(e) for e in errors.values()))
        return all(r is True for r in results)

    async def set_backends(self, backends: list[Backend]) -> None:
        self._wanted = list(backends)
        request = {"op": "set_backends", "backends": [b.to_json() for b in backends]}
        answers = await self._fan_out(request, only_healthy=True)
        if all(answer is None for answer in answers.values()):
            raise LbError(f"role {self.role}: no member of the pair took the backends "
                          f"({'; '.join(v.error or '?' for v in self.views.values())})")
        self._repair_soon()

    async def active(self, name: str) -> int:
        answers = await self._fan_out({"op": "active", "name": name}, only_healthy=True)
        return sum(int(a.get("active", 0)) for a in answers.values() if a is not None)

    async def stats(self) -> dict[str, Any]:
        names = list(self.members)
        stats_results, states_results = await asyncio.gather(
            asyncio.gather(*(self._bounded(self.members[n].call({"op": "stats"})) for n in names), return_exceptions=True),
            asyncio.gather(*(self._bounded(self.members[n].transitions()) for n in names), return_exceptions=True),
        )
        stats_by: dict[str, dict[str, Any]] = {}
        for name, stat, states in zip(names, stats_results, states_results, strict=True):
            view = self.views[name]
            view.reachable = not isinstance(states, BaseException)
            if isinstance(stat, BaseException):
                view.balancer = "down" if view.reachable else "unknown"
                view.error = str(stat) or type(stat).__name__
                self._healthy.discard(name)
            else:
                view.balancer = "running"
                view.error = None
                stats_by[name] = stat
            if not isinstance(states, BaseException):
                transitions, view.holds = states
                if transitions:
                    view.state, view.since = transitions[-1].state, transitions[-1].at
            else:
                view.error = view.error or str(states)
        self._follow_holder()
        self._repair_soon()
        serving = self._holder if self._holder in stats_by else next(iter(stats_by), None)
        answer: dict[str, Any] = dict(stats_by[serving]) if serving is not None else {"engine": self.engine, "role": self.role}
        answer["pair"] = self.pair_view()
        return answer

    async def stop(self) -> None:
        self._stopping = True
        if self._repairing is not None:
            self._repairing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repairing
        results = await asyncio.gather(*(m.stop() for m in self.members.values()), return_exceptions=True)
        await asyncio.gather(*(m.close() for m in self.members.values()), return_exceptions=True)
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise LbError(f"role {self.role}: stopping the pair: {'; '.join(errors)}")

    async def hand_over(self, new: object) -> bool:
        """A reload changed the lb table: let ``new`` take over in place when it is a pair too.
        Members it no longer names are stopped; the rest keep running (and the address stays
        where it is) for ``new.ensure_running`` to adopt, reconfigure live, or restart only
        where the listener changed. False: the caller stops this pair first."""
        if not isinstance(new, PairDataPlane) or new.engine != self.engine:
            return False  # another engine cannot take this one's listener over: stop first
        self._stopping = True
        if self._repairing is not None:
            self._repairing.cancel()
        leaving = [m for name, m in self.members.items() if name not in new.members]
        await asyncio.gather(*(m.stop() for m in leaving), return_exceptions=True)
        await asyncio.gather(*(m.close() for m in self.members.values()), return_exceptions=True)
        return True

    # -- HTTPS: what controller/certs.py calls ----------------------------------------------

    async def set_tls(self, tls: TlsSettings) -> None:
        """New certificate contents on every member, loaded live; succeeds when one member
        loaded them (the others are repaired: files copied, engine told). ``LbError`` when
        none did: each keeps serving its current certificate."""
        self.settings = self.settings.with_tls(tls)
        names = list(self.members)

        async def one(name: str) -> None:
            async with asyncio.timeout(TLS_TIMEOUT):
                await self.members[name].set_tls(tls)

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        failed = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, (FarmhandError, TimeoutError)):
                    raise result
                self._note_error(name, result)
                failed[name] = str(result) or type(result).__name__
        self._repair_soon()
        if len(failed) == len(names):
            raise LbError(f"role {self.role}: no member of the pair loaded the new certificates "
                          f"({'; '.join(f'{n}: {e}' for n, e in failed.items())})")

    async def set_challenges(self, challenges: dict[str, str]) -> None:
        """ACME HTTP-01 answers on every member's plain listener: the ACME server reaches
        whichever holds the address (and the next one, should it move mid-order)."""
        self._challenges = dict(challenges)
        answers = await self._fan_out({"op": "set_challenges", "challenges": self._challenges}, only_healthy=False)
        self._repair_soon()
        if all(answer is None for answer in answers.values()):
            raise LbError(f"role {self.role}: no member of the pair took the ACME challenges "
                          f"({'; '.join(v.error or '?' for v in self.views.values())})")

    # -- what the controller reads besides the contract ---------------------------------------

    def pair_view(self) -> dict[str, Any]:
        return {"vip": self.vip, "holder": self._holder,
                "members": {name: view.to_json() for name, view in self.views.items()}}

    def take_events(self) -> list[tuple[str, str]]:
        """Events since the last call, as (kind, message)."""
        events, self._events = self._events, []
        return events

    # -- inside -------------------------------------------------------------------------------

    async def _ensure_member(self, member: PlacedMember) -> bool:
        await member.push_certs()  # before the engine (re)reads them
        adopted = await member.ensure_engine()
        tls = member.plan.settings.tls
        if tls is not None:
            if adopted and not member.direct and member.tls_loaded != tls.version:
                await member.load_tls()  # HAProxy keeps certificates in memory: an adopted one may hold old ones
            member.tls_loaded = tls.version
            if self._challenges:
                await member.call({"op": "set_challenges", "challenges": self._challenges})
        if self._wanted is not None:
            await member.call({"op": "set_backends", "backends": [b.to_json() for b in self._wanted]})
        await member.ensure_keepalived()
        self._healthy.add(member.host)
        view = self.views[member.host]
        view.balancer, view.reachable, view.error = "running", True, None
        return adopted

    async def _bounded(self, call: Any) -> Any:
        async with asyncio.timeout(STATS_TIMEOUT):
            return await call

    async def _fan_out(self, request: dict[str, Any], *, only_healthy: bool) -> dict[str, dict[str, Any] | None]:
        names = [n for n in self.members if not only_healthy or n in self._healthy] or list(self.members)

        async def one(name: str) -> dict[str, Any] | None:
            try:
                async with asyncio.timeout(MEMBER_TIMEOUT):
                    return await self.members[name].call(request, timeout=MEMBER_TIMEOUT)
            except (FarmhandError, TimeoutError) as error:
                self._note_error(name, error)
                return None

        answers = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, answers, strict=True))

    def _note_error(self, name: str, error: BaseException) -> None:
        self._healthy.discard(name)
        self.views[name].error = str(error) or type(error).__name__

    def _repair_soon(self) -> None:
        """Repair members that are not healthy, in the background (a start takes seconds and
        must not hold up a push or a stats read)."""
        broken = [n for n in self.members if n not in self._healthy]
        if self._stopping or not broken or (self._repairing is not None and not self._repairing.done()):
            return
        self._repairing = asyncio.ensure_future(self._repair(broken))

    async def _repair(self, names: list[str]) -> None:
        """Members side by side: one whose host is out of reach (seconds of timeouts) must not
        delay the restart of another's balancer."""
        await asyncio.gather(*(self._repair_one(name) for name in names))

    async def _repair_one(self, name: str) -> None:
        try:
            adopted = await self._ensure_member(self.members[name])
        except FarmhandError as error:
            self._note_error(name, error)
            return
        if not adopted:
            self._events.append(("lb.member_restarted",
                                 f"role {self.role}: the load balancer on {name} was not running; started it again there"))

    def _follow_holder(self) -> None:
        """Who holds the address now (the reachable member whose last transition is MASTER),
        and an event when it moved. A read may fall in the tenth of a second between the old
        holder's FAULT and the new one's MASTER: the move is still told as a move from the
        last holder (with why it let go), and "nobody holds it" only when a second read agrees."""
        masters = [n for n, v in self.views.items() if v.holding]
        holder = max(masters, key=lambda n: self.views[n].since or 0.0) if masters else None
        if holder is None and self._holder is not None and not self.views[self._holder].reachable:
            return  # the holder is out of reach and nobody else says MASTER yet: keep what we knew
        if not self._holder_known:
            self._holder_known, self._holder, self._last_holder = True, holder, holder
            if holder is not None:
                self._events.append(("lb.vip_held", f"role {self.role}: {self.vip} is held by {holder}"))
            return
        previous, self._holder = self._holder, holder
        if holder is None:
            if previous is not None:
                self._let_go = self._why(previous)
                self._unheld_reads = 0
            self._unheld_reads += 1
            if self._unheld_reads == 2 and not self._stopping:
                self._events.append(("lb.vip_lost", f"role {self.role}: no member holds {self.vip} "
                                     f"(last holder {self._last_holder}: {self._let_go})"))
            return
        if holder == previous:
            return
        last, self._last_holder = self._last_holder, holder
        reason = self._why(previous) if previous is not None else self._let_go
        if self._stopping:
            return  # the pair is being stopped or handed over: its last moves are no news
        if last is None or last == holder:
            again = " again" if last == holder else ""
            self._events.append(("lb.vip_held", f"role {self.role}: {self.vip} is held by {holder}{again}"))
            return
        since = self.views[holder].since
        took = f" at {since:.3f}" if since else ""
        self._events.append(("lb.vip_moved", f"role {self.role}: {self.vip} moved to {holder}{took}; {last} {reason}"))

    def _why(self, name: str | None) -> str:
        if name is None:
            return "unknown"
        view = self.views[name]
        if not view.reachable:
            return "is out of reach (host or link down)"
        if view.balancer == "down":
            return "lost its load balancer"
        return f"went {view.state}"
