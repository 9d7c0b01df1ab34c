"""A worker's HTTPS certificates: one ``ssl.SSLContext`` per certificate, chosen by SNI.

The listener is created once with an outer context whose ``sni_callback`` sets the chosen
certificate's context on each new connection. Swapping certificates is replacing the table
the callback reads (``load``): handshakes from then on get the new ones, connections already
open keep theirs, and nothing is closed or re-bound (issue 15: swapped without dropping a
connection). A client that names no covered host (or sends no SNI) gets the first one.
"""

from __future__ import annotations

import ssl
from typing import Any

from farmhand.lb.settings import TlsSettings
from farmhand.lb.tls import CIPHERS_TLS12


def new_context() -> ssl.SSLContext:
    """A server context with Mozilla's intermediate settings (``farmhand.lb.tls``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS_TLS12)
    # Key-exchange groups: OpenSSL 3's defaults (X25519, P-256, X448, P-521, P-384) already
    # lead with intermediate's CURVES; ``set_ecdh_curve`` would cut them to a single one.
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    return context


class Certificates:
    """The table of contexts the worker's HTTPS listener picks from."""

    def __init__(self, tls: TlsSettings) -> None:
        self.version = ""
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}
        self.default: ssl.SSLContext | None = None
        self.load(tls)
        self.outer = new_context()
        self.outer.sni_callback = self._pick

    def load(self, tls: TlsSettings) -> None:
        """Read every certificate file again (``ssl.SSLError``/``OSError`` leaves the old
        table serving) and switch to them in one assignment per table."""
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        default = None
        for entry in tls.certs:
            context = new_context()
            context.load_cert_chain(entry.path)
            default = default or context
            for name in entry.names:
                name = name.lower()
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], context)
                else:
                    exact.setdefault(name, context)
        if default is None:
            raise ssl.SSLError("no certificate to serve")
        self.exact, self.wildcard, self.default = exact, wildcard, default
        self.version = tls.version

    def _pick(self, sslobj: Any, name: str | None, _outer: ssl.SSLContext) -> None:
        context = None
        if name:
            name = name.lower()
            context = self.exact.get(name)
            if context is None and "." in name:
                context = self.wildcard.get(name.split(".", 1)[1])
        sslobj.context = context or self.default
