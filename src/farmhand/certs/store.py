"""Where a role's certificates live: ``STATE/tls/ROLE/`` (0700), one PEM per certificate (0600).

The balancers load these copies, never the user's own files: a user who edits or removes
a file mid-way cannot leave a balancer half-loaded, and the key is readable by this user
only whatever the original's mode. ``install`` is idempotent (a file is rewritten only when
its content changes) so the controller may call it whenever it wonders whether the user's
files changed.

- ``cert-N.pem``: the user's Nth certificate (``cert``/``key`` first, then ``certs``);
- ``acme.pem``: the certificate ACME issued for the role's names, or until then a
  self-signed placeholder for them; ``acme-account.pem``: the role's ACME account key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from farmhand.certs import CertError, pem
from farmhand.spec.tls import TlsSpec


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by this user only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


class CertStore:
    """One role's certificate folder."""

    def __init__(self, state_dir: Path, role: str) -> None:
        self.folder = state_dir / "tls" / role
        self.farm_dir = state_dir.parent
        """Relative file names in the farm file are read from here (the farm file's folder)."""

    def __repr__(self) -> str:
        return f"<CertStore {self.folder}>"

    @property
    def acme_file(self) -> Path:
        return self.folder / "acme.pem"

    @property
    def account_file(self) -> Path:
        return self.folder / "acme-account.pem"

    def _ready(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)

    def _read_user(self, name: str, key: str) -> bytes:
        path = Path(name) if Path(name).is_absolute() else self.farm_dir / name
        try:
            return path.read_bytes()
        except OSError as error:
            raise CertError(f"tls.{key}: cannot read {path} ({error.strerror or error}); fix the path in the farm file") from error

    def install(self, tls: TlsSpec, now: float) -> list[tuple[Path, pem.CertInfo]]:
        """Put the certificates ``tls`` names in place; the files a listener serves, with
        what each holds (the first is the default one)."""
        self._ready()
        if tls.acme is not None:
            names = tls.acme.names
            current = self.read(self.acme_file)
            if current is None or not set(names) <= set(current.names):
                write_private(self.acme_file, pem.self_signed(names, now))
            served = [self.acme_file]
        else:
            served = []
            for index, files in enumerate(tls.files):
                key = "cert" if index == 0 and tls.cert else f"certs[{index - (1 if tls.cert else 0)}]"
                combined = pem.combine(self._read_user(files.cert, key + ".cert"), self._read_user(files.key, key + ".key"),
                                       f"tls.{key} ({files.cert})")
                target = self.folder / f"cert-{index}.pem"
                if not target.exists() or target.read_bytes() != combined:
                    write_private(target, combined)
                served.append(target)
            for stale in self.folder.glob("cert-*.pem"):
                if stale not in served:
                    stale.unlink(missing_ok=True)
        return [(path, pem.info(path.read_bytes(), str(path))) for path in served]

    @staticmethod
    def read(path: Path) -> pem.CertInfo | None:
        """What a stored certificate holds, or None when there is none (or it is unreadable)."""
        try:
            return pem.info(path.read_bytes(), str(path))
        except (OSError, CertError):
            return None

    def write_issued(self, chain_and_key: bytes) -> pem.CertInfo:
        """Keep a certificate ACME issued (chain + key PEM) as the one the listener serves."""
        self._ready()
        found = pem.info(chain_and_key, "the issued certificate")
        write_private(self.acme_file, chain_and_key)
        return found

    def account_key(self) -> bytes:
        """The role's ACME account key, made on first use."""
        self._ready()
        with contextlib.suppress(FileNotFoundError):
            return self.account_file.read_bytes()
        key = pem.new_key()
        write_private(self.account_file, key)
        return key


def digest(paths: list[Path]) -> str:
    """A short digest of the files' contents: a new one means the balancer must load them again."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]
