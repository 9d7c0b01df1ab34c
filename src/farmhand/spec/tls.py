"""A role balancer's HTTPS listener: the ``[roles.NAME.lb.tls]`` table.

Certificates come from files the user gives (``cert`` + ``key``, or several in ``certs`` for
SNI: one listener, a certificate per name) or from an ACME server (``acme``) for the names
listed, with the HTTP-01 challenge answered by the balancer on its plain listener (``lb.listen``).
Files named by a relative path are read from the farm file's folder.

    [roles.web.lb.tls]
    listen = "0.0.0.0:443"
    acme = { names = ["example.org", "www.example.org"], email = "ops@example.org" }
    redirect_http = true
    hsts = "8760h"
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from farmhand.spec.types import Duration, Strict

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class CertFiles(Strict):
    """One certificate (its chain, leaf first) and its private key, both PEM files."""

    cert: str
    key: str


class AcmeSpec(Strict):
    """Certificates obtained over ACME (RFC 8555) for ``names``, renewed by themselves."""

    names: tuple[str, ...] = Field(min_length=1, max_length=100)
    directory: str = LETS_ENCRYPT
    """The ACME server's directory URL (Let's Encrypt's by default)."""
    email: str | None = None
    """Where the ACME server may write about the account (expiry warnings)."""
    ca_file: str | None = None
    """A CA bundle to trust for the directory's own HTTPS (a private or test ACME server)."""

    @field_validator("names")
    @classmethod
    def _dns_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(name.strip().lower().rstrip(".") for name in names)
        for name in lowered:
            if not _NAME.match(name) or len(name) > 253:
                raise ValueError(f'"{name}" is not a DNS name a certificate can be issued for')
            if name.startswith("*."):
                raise ValueError(f'"{name}": wildcards need the DNS-01 challenge, which farmhand does not answer')
        if len(set(lowered)) != len(lowered):
            raise ValueError("a name is listed twice")
        return lowered

    @field_validator("directory")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f'"{value}" is not an https:// URL (ACME directories are served over HTTPS)')
        return value


class TlsSpec(Strict):
    listen: str
    """Where HTTPS is served ("0.0.0.0:443"); ``lb.listen`` goes on serving plain HTTP."""
    cert: str | None = None
    key: str | None = None
    certs: tuple[CertFiles, ...] = ()
    """More certificates on the same listener; a client's SNI name picks one."""
    acme: AcmeSpec | None = None
    redirect_http: bool = False
    """Answer plain-HTTP requests with a 301 to the same URL over HTTPS (ACME challenges excepted)."""
    hsts: Duration | None = None
    """Send ``Strict-Transport-Security: max-age=...`` on HTTPS answers ("8760h" is a year)."""

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        from farmhand.spec.models import split_host_port

        split_host_port(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TlsSpec:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both files, or neither")
        if not self.files and self.acme is None:
            raise ValueError('needs certificates: cert + key files, certs = [...], or acme = { names = [...] }')
        if self.files and self.acme is not None:
            raise ValueError("give either certificate files or acme, not both")
        if self.hsts is not None and self.hsts < 1:
            raise ValueError("hsts must be at least 1s")
        return self

    @property
    def files(self) -> tuple[CertFiles, ...]:
        """Every user-given certificate, ``cert``/``key`` first."""
        first = (CertFiles(cert=self.cert, key=self.key),) if self.cert and self.key else ()
        return first + self.certs

    @property
    def host_port(self) -> tuple[str, int]:
        from farmhand.spec.models import split_host_port

        return split_host_port(self.listen)
