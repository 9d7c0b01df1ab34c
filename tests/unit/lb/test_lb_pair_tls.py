"""An HTTPS listener on a load-balancer pair (lb/pair.py): the certificates the controller
keeps, what members are told when they change, and ACME answers given to every member. The
members are stand-ins (no host): what is checked is the fan-out, not SSH."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme

from farmhand.errors import LbError
from farmhand.lb.pair import PairDataPlane
from farmhand.lb.settings import TlsSettings
from tests.unit.lb.pairkit import pair_farm, pair_plane

FARM = pair_farm(after='tls = { listen = "10.213.0.100:8443", cert = "CERT", key = "KEY" }\n')


class Member:
    """Stands for ``PlacedMember``: records what it was asked; ``broken`` fails every call."""

    def __init__(self, real: Any, broken: bool = False) -> None:
        self.plan = real.plan
        self.host = real.host
        self.direct = True
        self.broken = broken
        self.tls_seen: list[TlsSettings] = []
        self.calls: list[dict[str, Any]] = []

    def _fail(self) -> None:
        if self.broken:
            raise LbError(f"host {self.host}: out of reach")

    async def set_tls(self, tls: TlsSettings) -> None:
        self._fail()
        self.plan = replace(self.plan, settings=self.plan.settings.with_tls(tls))
        self.tls_seen.append(tls)

    async def call(self, request: dict[str, Any], timeout: float = 0) -> dict[str, Any]:
        self._fail()
        self.calls.append(request)
        return {}


def cert_files(folder: Path, ca: trustme.CA, name: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(name)
    cert, key = folder / "site.crt", folder / "site.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def plane(tmp_path: Path, broken: tuple[str, ...] = ()) -> PairDataPlane:
    cert, key = cert_files(tmp_path, trustme.CA(), "site.test")
    p = pair_plane(FARM.replace("CERT", str(cert)).replace("KEY", str(key)), tmp_path / ".farmhand")
    p.members = {name: Member(m, name in broken) for name, m in p.members.items()}  # type: ignore[misc]
    return p


def test_the_controller_keeps_the_certificate_and_members_listen_on_all_addresses(tmp_path: Path) -> None:
    p = plane(tmp_path)
    assert p.settings.tls is not None
    kept = Path(p.settings.tls.certs[0].path)
    assert kept.parent == tmp_path / ".farmhand" / "tls" / "web" and kept.stat().st_mode & 0o777 == 0o600
    assert p.settings.tls.certs[0].names == ("site.test",)
    for member in p.members.values():
        assert member.plan.settings.tls == p.settings.tls, "each member is given the controller's set to copy"


def test_new_certificates_reach_every_member(tmp_path: Path) -> None:
    p = plane(tmp_path)
    assert p.settings.tls is not None
    fresh = replace(p.settings.tls, version="new")
    asyncio.run(p.set_tls(fresh))
    assert p.settings.tls == fresh
    assert all(m.tls_seen == [fresh] for m in p.members.values())  # type: ignore[attr-defined]


def test_a_member_that_misses_them_is_repaired_and_none_loading_them_is_an_error(tmp_path: Path) -> None:
    p = plane(tmp_path, broken=("lb2",))
    p._stopping = True  # no background repair in this test: only what set_tls decided
    assert p.settings.tls is not None
    asyncio.run(p.set_tls(replace(p.settings.tls, version="new")))
    assert "lb2" not in p._healthy and "out of reach" in (p.views["lb2"].error or "")
    (tmp_path / "q").mkdir()
    q = plane(tmp_path / "q", broken=("lb1", "lb2"))
    q._stopping = True
    assert q.settings.tls is not None
    with pytest.raises(LbError, match="no member of the pair loaded the new certificates"):
        asyncio.run(q.set_tls(replace(q.settings.tls, version="new")))


def test_acme_answers_go_to_every_member(tmp_path: Path) -> None:
    p = plane(tmp_path, broken=("lb1",))
    p._stopping = True
    asyncio.run(p.set_challenges({"token": "token.key"}))
    assert p.members["lb2"].calls == [{"op": "set_challenges", "challenges": {"token": "token.key"}}]  # type: ignore[attr-defined]
    assert p._challenges == {"token": "token.key"}, "kept for a member repaired later"
