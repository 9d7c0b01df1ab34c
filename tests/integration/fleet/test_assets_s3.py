"""`farmhand assets push` against moto's server mode, started here on 127.0.0.1 as a local
stand-in for S3 (the real S3 is never reached): the first push uploads every file with its
content type, a second uploads nothing, a changed file is the only one uploaded (also one of
the same size), and --delete removes an object whose file vanished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import Farm, free_port, wait_for

pytestmark = pytest.mark.slow

BUCKET = "shop-static"


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on loopback (a local stand-in for S3); its URL. Removed at the end."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is None and _answers(url), 60, "moto's server to answer")
        yield url
    finally:
        server.kill()
        server.wait(timeout=10)
        log.close()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/", timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Throwaway credentials (moto takes any) for this test and the commands it runs."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "AWS_EC2_METADATA_DISABLED": "true"}  # never ask an instance-metadata address
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _s3(url: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=url)


def _site(folder: Path) -> Path:
    (folder / "css").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>shop</h1>\n")
    (folder / "css" / "app.css").write_text("body { color: black }\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))
    (folder / "app.js").write_text("console.log(1)\n")
    return folder


def _push(farm: Farm, source: Path, *extra: str) -> dict[str, Any]:
    answer = farm.cli("assets", "push", str(source), "--json", *extra)
    result: dict[str, Any] = json.loads(answer.stdout)
    return result


def test_assets_push_against_moto_standin_for_s3(make_farm: Callable[..., Farm], moto_s3: str,
                                                 credentials: dict[str, str], tmp_path: Path) -> None:
    s3 = _s3(moto_s3)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="elsewhere/keep.txt", Body=b"not under the prefix")
    farm = make_farm(f'[assets]\nbucket = "{BUCKET}"\nprefix = "/v2/static/"\nendpoint_url = "{moto_s3}"\n')
    farm.env.update(credentials)
    site = _site(tmp_path / "site")

    first = _push(farm, site)
    assert {f["key"]: f["content_type"] for f in first["uploaded"]} == {
        "v2/static/index.html": "text/html", "v2/static/css/app.css": "text/css",
        "v2/static/logo.png": "image/png", "v2/static/app.js": "application/javascript"}
    for key, kind in (("v2/static/index.html", "text/html"), ("v2/static/logo.png", "image/png")):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentType"] == kind
        assert len(head["Metadata"]["sha256"]) == 64, "the checksum is stored with the object"
    assert s3.get_object(Bucket=BUCKET, Key="v2/static/css/app.css")["Body"].read() == b"body { color: black }\n"

    second = _push(farm, site)
    assert second["uploaded"] == [] and len(second["unchanged"]) == 4

    (site / "css" / "app.css").write_text("body { color: purple }\n")
    (site / "index.html").write_text("<h1>SHOP</h1>\n")  # same size, other content
    third = _push(farm, site)
    assert sorted(f["key"] for f in third["uploaded"]) == ["v2/static/css/app.css", "v2/static/index.html"]
    assert sorted(third["unchanged"]) == ["v2/static/app.js", "v2/static/logo.png"]
    assert s3.get_object(Bucket=BUCKET, Key="v2/static/index.html")["Body"].read() == b"<h1>SHOP</h1>\n"

    (site / "logo.png").unlink()
    kept = _push(farm, site)
    assert kept["uploaded"] == [] and kept["deleted"] == [], "nothing deleted unless asked"
    dry = _push(farm, site, "--delete", "--dry-run")
    assert dry["deleted"] == ["v2/static/logo.png"]
    assert "v2/static/logo.png" in _keys(s3), "a dry run deletes nothing"
    pruned = farm.cli("assets", "push", str(site), "--delete")
    assert "deleted v2/static/logo.png" in pruned.stdout
    assert "uploaded 0, unchanged 3, deleted 1" in pruned.stdout
    assert _keys(s3) == {"elsewhere/keep.txt", "v2/static/index.html", "v2/static/css/app.css", "v2/static/app.js"}


def test_assets_push_names_a_missing_bucket_and_missing_credentials(make_farm: Callable[..., Farm], moto_s3: str,
                                                                    credentials: dict[str, str],
                                                                    tmp_path: Path) -> None:
    farm = make_farm(f'[assets]\nendpoint_url = "{moto_s3}"\n')
    farm.env.update(credentials)
    site = _site(tmp_path / "site")
    none = farm.cli("assets", "push", str(site), check=False)
    assert none.returncode == 1 and "no bucket: give --bucket" in none.stderr
    missing = farm.cli("assets", "push", str(site), "--bucket", "nowhere", check=False)
    assert missing.returncode == 1 and "no bucket nowhere" in missing.stderr
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        farm.env.pop(key)
    bare = farm.cli("assets", "push", str(site), "--bucket", BUCKET, check=False)
    assert bare.returncode == 1 and "no S3 credentials" in bare.stderr, bare.stderr
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"


def _keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
