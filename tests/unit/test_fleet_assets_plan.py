"""What `farmhand assets push` uploads, keeps and deletes, decided from listings (pure)."""

from __future__ import annotations

import pytest

from farmhand.fleet import assets_plan as plans
from farmhand.fleet.assets_plan import LocalFile, RemoteObject, Verdict

MD5 = "0" * 31 + "1"
SHA = "a" * 64


def _file(key: str = "s/a.css", size: int = 10, md5: str = MD5, sha: str = SHA) -> LocalFile:
    return LocalFile(key=key, path=f"/src/{key}", size=size, md5=md5, sha256=sha, content_type="text/css")


@pytest.mark.parametrize(("remote", "verdict"), [
    (None, Verdict.UPLOAD),
    (RemoteObject("s/a.css", 11, MD5), Verdict.UPLOAD),
    (RemoteObject("s/a.css", 10, MD5), Verdict.UNCHANGED),
    (RemoteObject("s/a.css", 10, "f" * 32), Verdict.ASK),
    (RemoteObject("s/a.css", 10, "9b2cf535f27731c974343645a3985328-3"), Verdict.ASK),
    (RemoteObject("s/a.css", 10, "9b2cf535f27731c974343645a3985328-3", SHA, metadata_read=True), Verdict.UNCHANGED),
    (RemoteObject("s/a.css", 10, "f" * 32, "b" * 64, metadata_read=True), Verdict.UPLOAD),
    (RemoteObject("s/a.css", 10, "f" * 32, None, metadata_read=True), Verdict.UPLOAD),
], ids=["new", "other size", "same md5 etag", "etag not its md5 (sse-kms)", "multipart etag",
        "multipart, same stored sha256", "other stored sha256", "no stored sha256 (not ours)"])
def test_a_file_is_unchanged_only_when_size_and_checksum_agree(remote: RemoteObject | None,
                                                               verdict: Verdict) -> None:
    assert plans.compare(_file(), remote) is verdict


def test_plan_sorts_files_and_deletes_only_when_asked() -> None:
    local = [_file("s/b.css"), _file("s/a.css", size=12), _file("s/c.css", md5="e" * 32)]
    remote = {"s/a.css": RemoteObject("s/a.css", 10, MD5), "s/b.css": RemoteObject("s/b.css", 10, MD5),
              "s/c.css": RemoteObject("s/c.css", 10, MD5), "s/gone.js": RemoteObject("s/gone.js", 3, MD5)}
    kept = plans.plan(local, remote, delete=False)
    assert [f.key for f in kept.upload] == ["s/a.css"] and [f.key for f in kept.unchanged] == ["s/b.css"]
    assert [f.key for f in kept.ask] == ["s/c.css"], "same size, other MD5: the stored sha256 decides"
    assert kept.delete == []
    assert plans.plan(local, remote, delete=True).delete == ["s/gone.js"]


@pytest.mark.parametrize(("name", "kind"), [
    ("index.html", "text/html"), ("app.css", "text/css"), ("logo.png", "image/png"), ("font.woff2", "font/woff2"),
    ("data.json", "application/json"), ("x.svg", "image/svg+xml"), ("backup.tar.gz", "application/gzip"),
    ("app.js.map", "application/json"), ("LICENSE", "application/octet-stream"),
])
def test_content_types_come_from_the_name(name: str, kind: str) -> None:
    assert plans.content_type(name) == kind


def test_keys_and_excludes() -> None:
    assert plans.key_for("v2/static", "css/a.css") == "v2/static/css/a.css"
    assert plans.key_for("", "css/a.css") == "css/a.css"
    assert plans.excluded("css/.DS_Store", [".DS_Store"])
    assert plans.excluded("drafts/x.html", ["drafts/*"]) and not plans.excluded("x/drafts/y.html", ["drafts/*"])
    assert not plans.excluded("css/a.css", ["*.map"])


def test_summary_says_what_was_or_would_be_done() -> None:
    assert plans.summary(3, 10, 1, dry_run=False, delete=True) == "uploaded 3, unchanged 10, deleted 1"
    assert plans.summary(1, 2, 0, dry_run=True, delete=False) == "would upload 1, unchanged 2"
