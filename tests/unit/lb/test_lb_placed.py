"""Pure parts of a pair member's handle (lb/placed.py)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from farmhand.lb.placed import (
    CERTS_CHANGED,
    cert_push_script,
    interface_from_routes,
    member_settings,
)
from farmhand.lb.settings import CertEntry, EngineSettings, TlsSettings


def test_the_most_specific_route_names_the_interface() -> None:
    lines = ["default via 10.0.0.1 dev ens3 proto dhcp", "10.213.1.0/24 dev eth0 proto kernel scope link src 10.213.1.11"]
    assert interface_from_routes(lines) == "eth0"
    assert interface_from_routes(lines[:1]) == "ens3"
    assert interface_from_routes([]) is None
    assert interface_from_routes(["unreachable 10.0.0.0/8"]) is None


def test_a_member_reads_its_own_copy_of_each_certificate_on_all_addresses() -> None:
    tls = TlsSettings(listen_host="10.213.0.100", listen_port=443, version="v1",
                      certs=(CertEntry(path="/state/tls/web/cert-0.pem", names=("a.test",)),
                             CertEntry(path="/state/tls/web/cert-1.pem", names=("b.test",))))
    settings = EngineSettings(role="web", listen_host="0.0.0.0", listen_port=80, tls=tls)
    found = member_settings(settings, "/base/lb/web")
    assert found.tls is not None
    assert found.tls.listen == "0.0.0.0:443" and found.tls.version == "v1"
    assert [(c.path, c.names) for c in found.tls.certs] == [("/base/lb/web/tls/cert-0.pem", ("a.test",)),
                                                            ("/base/lb/web/tls/cert-1.pem", ("b.test",))]
    plain = EngineSettings(role="web", listen_host="0.0.0.0", listen_port=80)
    assert member_settings(plain, "/base/lb/web") is plain


def _push(folder: Path, files: dict[str, bytes]) -> int:
    return subprocess.run(["/bin/sh", "-c", cert_push_script(files)], cwd=folder, check=False).returncode


def test_the_push_script_writes_private_files_only_when_they_change(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'$(touch /tmp/x)'\n"
    assert _push(tmp_path, {"cert-0.pem": pem, "cert-1.pem": b"two"}) == CERTS_CHANGED
    folder = tmp_path / "tls"
    assert (folder / "cert-0.pem").read_bytes() == pem
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "cert-0.pem").stat().st_mode) == 0o600
    assert _push(tmp_path, {"cert-0.pem": pem, "cert-1.pem": b"two"}) == 0, "the same content: nothing replaced"
    assert _push(tmp_path, {"cert-0.pem": b"new"}) == CERTS_CHANGED
    assert sorted(p.name for p in folder.iterdir()) == ["cert-0.pem"], "a file no longer served is removed"
    assert (folder / "cert-0.pem").read_bytes() == b"new"
    with pytest.raises(ValueError, match="plain file name"):
        cert_push_script({"../x.pem": b""})
