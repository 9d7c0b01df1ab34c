"""PEM files: read a certificate's facts, check a key belongs to it, make keys and CSRs.

Both engines load one PEM per certificate holding the chain (leaf first) and the private
key (HAProxy's ``crt`` form; Python's ``load_cert_chain`` reads it too), so everything
here speaks that form.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from farmhand.certs import CertError
from farmhand.certs.schedule import Validity


@dataclass(frozen=True)
class CertInfo:
    """What status, events and Prometheus say about a certificate."""

    names: tuple[str, ...]
    issuer: str
    not_before: float
    not_after: float
    self_signed: bool

    @property
    def validity(self) -> Validity:
        return Validity(self.not_before, self.not_after)

    def to_json(self) -> dict[str, object]:
        return {"names": list(self.names), "issuer": self.issuer, "not_before": self.not_before,
                "not_after": self.not_after, "self_signed": self.self_signed}


def _certificates(pem: bytes, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise CertError(f"{where}: not a PEM certificate ({error})") from error
    return certs


def info(pem: bytes, where: str = "certificate") -> CertInfo:
    """The leaf's names (SAN DNS names, else its CN), issuer and validity."""
    leaf = _certificates(pem, where)[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n) for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if not names:
        names = tuple(str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return CertInfo(
        names=names,
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        self_signed=leaf.issuer == leaf.subject,
    )


def combine(cert_pem: bytes, key_pem: bytes, where: str) -> bytes:
    """The chain and key as one PEM, after checking that the key is the leaf's."""
    leaf = _certificates(cert_pem, where)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise CertError(f"{where}: the key file is not an unencrypted PEM private key ({error})") from error
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != leaf.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise CertError(f"{where}: the key does not belong to the certificate")
    return cert_pem.rstrip(b"\n") + b"\n" + key_pem.rstrip(b"\n") + b"\n"


def new_key() -> bytes:
    """A fresh ECDSA P-256 private key, PEM (fast handshakes; every ACME CA takes it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def csr(key_pem: bytes, names: tuple[str, ...]) -> bytes:
    """A certificate signing request for ``names`` (PEM)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def self_signed(names: tuple[str, ...], now: float, days: int = 7) -> bytes:
    """A placeholder certificate + key for ``names`` (PEM): what an ACME listener serves
    until its first real certificate arrives. Browsers refuse it, which is honest."""
    key_pem = new_key()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "farmhand placeholder")])
    start = datetime.datetime.fromtimestamp(now - 3600, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem
