"""Certificates the balancers serve, kept current by the controller (issue 15).

Called on every tick (``DataPlanes.ensure``), never blocking it: for each role whose
``lb.tls`` asks for ACME, an order starts when the certificate served is a placeholder or
due for renewal (``certs.schedule``: a third of its lifetime left) and no backoff holds it
back; the order runs in a thread (``certs.acme_client``) while the balancer answers its
HTTP-01 challenges, then the new certificate is stored 0600 and loaded into the running
balancer (``set_tls``: no connection dropped). A failed order is an event with the ACME
server's reason and is retried with a doubling delay; the balancer keeps the certificate
it has. For user-given files, a change of the files on disk is loaded the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from farmhand.certs import CertError, schedule
from farmhand.certs.pem import CertInfo
from farmhand.certs.store import CertStore
from farmhand.errors import FarmhandError
from farmhand.spec.models import FarmSpec
from farmhand.spec.tls import TlsSpec

FILES_EVERY = 5.0
"""How often user-given certificate files are looked at for changes."""


class TlsPlane(Protocol):
    settings: Any

    async def set_tls(self, tls: Any) -> None: ...

    async def set_challenges(self, challenges: dict[str, str]) -> None: ...


@dataclass
class RoleCerts:
    served: CertInfo | None = None
    failures: int = 0
    last_failure: float | None = None
    order: asyncio.Task[None] | None = None
    files_seen: tuple[tuple[int, int], ...] | None = None


class CertKeeper:
    def __init__(self, state_dir: Path, now: Callable[[], float], say: Callable[[str, str, str | None], object]) -> None:
        self._state_dir = state_dir
        self._now = now
        self._say = say
        self.roles: dict[str, RoleCerts] = {}
        self._files_at = 0.0

    def __repr__(self) -> str:
        ordering = [name for name, r in self.roles.items() if r.order is not None and not r.order.done()]
        return f"<CertKeeper [roles: {len(self.roles)} | ordering: {', '.join(ordering) or 'none'}]>"

    def certificates(self) -> dict[str, CertInfo]:
        """What each role's balancer serves now (status, Prometheus)."""
        return {name: r.served for name, r in self.roles.items() if r.served is not None}

    def tick(self, spec: FarmSpec, planes: dict[str, Any]) -> None:
        now = self._now()
        check_files = now - self._files_at >= FILES_EVERY
        if check_files:
            self._files_at = now
        for name in list(self.roles):
            role = spec.roles.get(name)
            if role is None or role.lb is None or role.lb.tls is None:
                self.roles.pop(name)
        for name, role in spec.roles.items():
            tls = None if role.lb is None else role.lb.tls
            plane = planes.get(name)
            if tls is None or plane is None or not hasattr(plane, "set_tls"):
                continue
            state = self.roles.setdefault(name, RoleCerts())
            if state.order is not None and not state.order.done():
                continue
            store = CertStore(self._state_dir, name)
            if tls.acme is None:
                if check_files:
                    self._watch_files(name, tls, plane, state, store)
                continue
            if state.served is None:
                state.served = CertStore.read(store.acme_file)
            validity = None if state.served is None or state.served.self_signed else state.served.validity
            if schedule.is_due(validity, now) and now >= schedule.next_attempt(validity, state.failures, state.last_failure, now):
                state.order = asyncio.ensure_future(self._order(name, tls, plane, state, store))

    async def _order(self, role: str, tls: TlsSpec, plane: TlsPlane, state: RoleCerts, store: CertStore) -> None:
        from farmhand.certs import acme_client
        from farmhand.lb.tls import refreshed

        assert tls.acme is not None
        acme = tls.acme
        loop = asyncio.get_running_loop()

        def publish(answers: dict[str, str]) -> None:  # from the order's thread
            asyncio.run_coroutine_threadsafe(plane.set_challenges(answers), loop).result(timeout=10)

        names = ", ".join(acme.names)
        try:
            chain = await asyncio.to_thread(
                acme_client.issue, directory=acme.directory, names=acme.names, account_key=store.account_key(),
                email=acme.email, ca_file=acme.ca_file, publish=publish,
            )
            state.served = store.write_issued(chain)
            await plane.set_tls(refreshed(plane.settings.tls))
        except (FarmhandError, OSError) as error:
            state.failures += 1
            state.last_failure = self._now()
            delay = schedule.retry_delay(state.failures)
            self._say("tls.failed", f"role {role}: no certificate for {names}: {error}; trying again in {delay:g}s, "
                      "the balancer keeps serving its current certificate", role)
            return
        state.failures = 0
        state.last_failure = None
        self._say("tls.issued", f"role {role}: certificate for {names} from {state.served.issuer}, valid until "
                  f"{_when(state.served.not_after)}; the balancer serves it", role)

    def _watch_files(self, role: str, tls: TlsSpec, plane: TlsPlane, state: RoleCerts, store: CertStore) -> None:
        """Load the user's files again when they changed on disk (mtime or size)."""
        seen = []
        for files in tls.files:
            for name in (files.cert, files.key):
                path = Path(name) if Path(name).is_absolute() else store.farm_dir / name
                try:
                    found = os.stat(path)
                    seen.append((found.st_mtime_ns, found.st_size))
                except OSError:
                    seen.append((0, 0))
        first = state.files_seen is None
        if state.files_seen == tuple(seen):
            return
        state.files_seen = tuple(seen)
        if first:
            served = CertStore.read(store.folder / "cert-0.pem")
            state.served = served
            return
        state.order = asyncio.ensure_future(self._reload_files(role, tls, plane, state))

    async def _reload_files(self, role: str, tls: TlsSpec, plane: TlsPlane, state: RoleCerts) -> None:
        from farmhand.lb.tls import settings_for

        try:
            fresh = settings_for(role, tls, self._state_dir)
            if fresh.version != plane.settings.tls.version:
                await plane.set_tls(fresh)
                state.served = CertStore.read(Path(fresh.certs[0].path))
                self._say("tls.loaded", f"role {role}: the balancer loaded the changed certificate files", role)
        except (FarmhandError, OSError) as error:
            self._say("tls.failed", f"role {role}: the changed certificate files were not loaded: {error}; "
                      "the balancer keeps serving the previous ones", role)

    async def close(self) -> None:
        for state in self.roles.values():
            if state.order is not None and not state.order.done():
                state.order.cancel()
                with contextlib.suppress(asyncio.CancelledError, CertError):
                    await state.order


def _when(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
