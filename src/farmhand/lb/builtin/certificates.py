"""A worker's HTTPS certificates: one ``ssl.SSLContext`` per certificate, chosen by SNI.

The listener is created once with an outer context that serves the first certificate and,
when there are more, has an ``sni_callback`` that sets the chosen certificate's context on
each new connection. Swapping certificates is loading the first one into the outer context
again and replacing the table the callback reads (``load``): handshakes from then on get the new ones, connections already
open keep theirs, and nothing is closed or re-bound (issue 15: swapped without dropping a
connection). A client that names no covered host (or sends no SNI) gets the first one.

The listener runs on the engine's own TLS transport (``tls_transport``), which wraps each
accepted socket with the outer context (so the ``sni_callback`` is handed that transport,
whose ``context`` attribute switches the connection's context). Where that transport cannot
run, the event loop's TLS is the fallback, and for it every context hands out
``DirectSSLObject``s (see there): that transport calls their read, write and pending several
times per request.
"""

from __future__ import annotations

import ssl
from typing import Any

from farmhand.lb.settings import TlsSettings
from farmhand.lb.tls import CIPHERS_TLS12


class DirectSSLObject(ssl.SSLObject):
    """An ``ssl.SSLObject`` whose ``read``, ``write``, ``pending`` and ``do_handshake`` are
    the C object's own methods, bound on the instance.

    Why: ``ssl.SSLObject`` is a Python class whose methods only forward to ``_ssl``'s C
    object, and uvloop's TLS transport calls them (and binds them once per connection) on
    every record in and out. The forwarding frames cost about a tenth of a worker's CPU on
    kept-alive HTTPS (py-spy, bench/https_bench.py); the C methods take the same arguments.
    ``_create`` is what ``SSLContext.wrap_bio`` calls (CPython 3.7 to 3.13); were it gone,
    ``new_context`` keeps the standard class."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
        made: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        inner = made._sslobj  # type: ignore[attr-defined]
        made.read = inner.read  # type: ignore[method-assign]
        made.write = inner.write  # type: ignore[method-assign]
        made.pending = inner.pending  # type: ignore[method-assign]
        made.do_handshake = inner.do_handshake  # type: ignore[method-assign]
        return made


def new_context() -> ssl.SSLContext:
    """A server context with Mozilla's intermediate settings (``farmhand.lb.tls``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS_TLS12)
    # Key-exchange groups: OpenSSL 3's defaults (X25519, P-256, X448, P-521, P-384) already
    # lead with intermediate's CURVES; ``set_ecdh_curve`` would cut them to a single one.
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    if hasattr(ssl.SSLObject, "_create"):
        context.sslobject_class = DirectSSLObject
    return context


class Certificates:
    """The table of contexts the worker's HTTPS listener picks from."""

    def __init__(self, tls: TlsSettings) -> None:
        self.version = ""
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}
        self.default: ssl.SSLContext | None = None
        self.outer = new_context()
        self.load(tls)

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
        # The listener's own context serves the first certificate itself, so a handshake for
        # it (every handshake, with one certificate: no callback at all) skips the switch
        # of context, which copies the certificate and key into the connection again.
        self.outer.load_cert_chain(tls.certs[0].path)
        self.exact, self.wildcard, self.default = exact, wildcard, default
        self.outer.sni_callback = self._pick if len(tls.certs) > 1 else None
        self.version = tls.version

    def _pick(self, sslobj: Any, name: str | None, _outer: ssl.SSLContext) -> None:
        context = None
        if name:
            name = name.lower()
            context = self.exact.get(name)
            if context is None and "." in name:
                context = self.wildcard.get(name.split(".", 1)[1])
        if context is not None and context is not self.default:
            sslobj.context = context
