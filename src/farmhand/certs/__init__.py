"""Certificates for HTTPS balancers: where they are kept, how they are obtained, when renewed.

- ``store``: one folder per role under the farm's state folder (``.farmhand/tls/ROLE/``,
  0700, files 0600): the user's certificate files copied in as one PEM per certificate
  (chain + key, the form both engines load), or the one ACME issued, or a self-signed
  placeholder that serves until ACME's first certificate arrives.
- ``pem``: reading and making PEM files (names, issuer, validity; key matches certificate).
- ``acme_client``: one ACME (RFC 8555) order through certbot's ``acme`` package, HTTP-01
  answered by whoever ``publish`` hands the token to (the balancer's plain listener).
- ``schedule``: pure decisions: when a certificate is due for renewal (a third of its
  lifetime left) and how long to wait after a failed order.

The controller drives them (``controller/certs.py``); the balancers only load the files.
"""

from __future__ import annotations

from farmhand.errors import FarmhandError


class CertError(FarmhandError):
    """A certificate could not be read, installed or obtained; the message says which file or
    name, and for an ACME order the server's own reason."""


__all__ = ["CertError"]
