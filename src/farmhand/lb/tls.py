"""HTTPS listeners, shared by both engines: the Mozilla "intermediate" settings and the
``TlsSettings`` a role's spec becomes once its certificate files are in place.

Intermediate (ssl-config.mozilla.org, guideline 5.7): TLS 1.2 and 1.3 only; for 1.2 the
AEAD suites with ECDHE key exchange (the DHE ones are left out: they need DH parameters and
add nothing for current clients); 1.3's suites are OpenSSL's defaults; curves X25519,
P-256, P-384; no session tickets. The builtin engine hands these strings to Python's ``ssl``
(OpenSSL), HAProxy to the same OpenSSL, so the two differ in nothing a client can see.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from farmhand.lb.settings import CertEntry, TlsSettings

if TYPE_CHECKING:
    from farmhand.spec.tls import TlsSpec

CIPHERS_TLS12 = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
CIPHERSUITES_TLS13 = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
"""Intermediate's three TLS 1.3 suites in OpenSSL's default order, the one the builtin engine
serves (Python's ``ssl`` cannot reorder them). Both engines prefer the server's order, so
with Mozilla's listed order HAProxy chose AES-128 where the builtin chose AES-256 for the same
client: the same order makes the same choice (and a fair benchmark)."""
CURVES = "X25519:prime256v1:secp384r1"
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


def settings_for(role: str, tls: TlsSpec, state_dir: Path, now: float | None = None) -> TlsSettings:
    """Install ``role``'s certificates under the state folder (``farmhand.certs.store``) and
    describe the listener that serves them. ``CertError`` names a file that cannot be used."""
    from farmhand.certs.store import CertStore, digest

    served = CertStore(state_dir, role).install(tls, time.time() if now is None else now)
    host, port = tls.host_port
    return TlsSettings(
        listen_host=host,
        listen_port=port,
        certs=tuple(CertEntry(path=str(path), names=found.names) for path, found in served),
        redirect_http=tls.redirect_http,
        hsts_seconds=None if tls.hsts is None else int(tls.hsts),
        version=digest([path for path, _ in served]),
    )


def refreshed(tls: TlsSettings) -> TlsSettings:
    """The same listener with ``version`` (and each file's names) read again from the files."""
    from farmhand.certs.store import CertStore, digest

    paths = [Path(c.path) for c in tls.certs]
    certs = []
    for entry, path in zip(tls.certs, paths, strict=True):
        found = CertStore.read(path)
        certs.append(entry if found is None else CertEntry(path=entry.path, names=found.names))
    return replace(tls, certs=tuple(certs), version=digest(paths))
