"""What `farmhand assets push` must do, decided without touching S3 (pure).

How a file is known to be unchanged: its size, then its content.

1. No object under its key, or one of another size: upload.
2. The object's ETag is a plain 32-hex MD5 equal to the file's MD5: unchanged. S3 gives an
   object uploaded in one part (what we do below ``MULTIPART_THRESHOLD``) its MD5 as ETag,
   so this answers from the listing alone, one request per 1,000 objects.
3. Otherwise the ETag cannot tell (a multipart upload's ``md5-of-parts-N``, or an object
   encrypted with SSE-KMS, whose ETag is not its MD5): the object's own ``sha256`` metadata,
   which every upload of ours carries, decides, read with one HEAD request; an object with
   none (not uploaded by farmhand) is uploaded again.

So the MD5 in the ETag is the fast path and the stored SHA-256 the one that always works.
Objects under the prefix with no local file are deleted only when asked (``--delete``).
"""

from __future__ import annotations

import fnmatch
import mimetypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Files up to this size go up in one part (their ETag is then their MD5)."""
SHA256_KEY = "sha256"
"""The object metadata key (``x-amz-meta-sha256``) holding the file's SHA-256."""
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")

_TYPES = mimetypes.MimeTypes(filenames=())
"""Python's own table only: the same content types on every machine, whatever its
/etc/mime.types says."""
for _suffix, _type in {".woff2": "font/woff2", ".woff": "font/woff", ".webp": "image/webp", ".avif": "image/avif",
                       ".mjs": "text/javascript", ".map": "application/json", ".md": "text/markdown"}.items():
    _TYPES.add_type(_type, _suffix)
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
            "br": "application/x-brotli", "compress": "application/x-compress"}


class Verdict(StrEnum):
    UPLOAD = "upload"
    UNCHANGED = "unchanged"
    ASK = "ask"
    """The listing cannot tell: read the object's metadata (HEAD), then decide again."""


@dataclass(frozen=True)
class LocalFile:
    key: str
    path: str
    size: int
    md5: str
    sha256: str
    content_type: str


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str
    """As S3 lists it, quotes removed."""
    sha256: str | None = None
    """From the object's metadata, once read (None: not read yet, or not there)."""
    metadata_read: bool = False


def content_type(name: str) -> str:
    """The Content-Type for a file name; a compressed file (``x.tar.gz``) is the compressed
    kind, not what is inside; unknown kinds are ``application/octet-stream``."""
    kind, encoding = _TYPES.guess_type(name, strict=False)
    if encoding:
        return _ENCODED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def key_for(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def excluded(relative: str, patterns: Iterable[str]) -> bool:
    """rsync-like: a pattern without ``/`` matches any path's last part, one with ``/`` the
    whole relative path."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative if "/" in p else name, p.strip("/")) for p in patterns)


def compare(local: LocalFile, remote: RemoteObject | None) -> Verdict:
    if remote is None or remote.size != local.size:
        return Verdict.UPLOAD
    if _PLAIN_MD5.fullmatch(remote.etag) and remote.etag == local.md5:
        return Verdict.UNCHANGED
    if remote.metadata_read:
        return Verdict.UNCHANGED if remote.sha256 == local.sha256 else Verdict.UPLOAD
    return Verdict.ASK


@dataclass
class Plan:
    upload: list[LocalFile] = field(default_factory=list)
    unchanged: list[LocalFile] = field(default_factory=list)
    ask: list[LocalFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def plan(local: Iterable[LocalFile], remote: Mapping[str, RemoteObject], *, delete: bool) -> Plan:
    """Each local file into upload, unchanged or ask (see ``compare``); with ``delete``, the
    remote keys no local file has, sorted."""
    result = Plan()
    keys = set()
    for item in sorted(local, key=lambda f: f.key):
        keys.add(item.key)
        verdict = compare(item, remote.get(item.key))
        {Verdict.UPLOAD: result.upload, Verdict.UNCHANGED: result.unchanged, Verdict.ASK: result.ask}[verdict] \
            .append(item)
    if delete:
        result.delete = sorted(key for key in remote if key not in keys)
    return result


def summary(uploaded: int, unchanged: int, deleted: int, *, dry_run: bool, delete: bool) -> str:
    """``uploaded 3, unchanged 10, deleted 1`` (``would upload`` in a dry run)."""
    would = "would " if dry_run else ""
    parts = [f"{would}upload {uploaded}" if dry_run else f"uploaded {uploaded}", f"unchanged {unchanged}"]
    if delete:
        parts.append(f"{would}delete {deleted}" if dry_run else f"deleted {deleted}")
    return ", ".join(parts)
