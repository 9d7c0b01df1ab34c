"""`farmhand assets push`: a folder's static files to S3 (or a store speaking its API) with
boto3; only new or changed files go up (``assets_plan`` decides, from sizes, ETags and the
SHA-256 every upload stores in its metadata).

Credentials come from boto3's usual chain (environment, ~/.aws/, an instance role); the
bucket, prefix, endpoint and region from the farm file's ``[assets]`` or the flags. S3's
answers are translated here into errors that say what to fix (no credentials, no bucket, no
endpoint).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.errors import RequestError
from farmhand.fleet import assets_plan as plans
from farmhand.fleet.assets_plan import LocalFile, Plan, RemoteObject

WORKERS = 8
"""Requests in flight at once (HEADs, uploads)."""


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")


@dataclass
class PushResult:
    uploaded: list[LocalFile] = field(default_factory=list)
    unchanged: list[LocalFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def local_files(source: Path, prefix: str, excludes: Sequence[str] = ()) -> list[LocalFile]:
    """Every regular file under ``source`` (symlinks to files followed), with its key."""
    if not source.is_dir():
        raise RequestError(f"{source} is not a folder: assets push sends a folder's files", "source")
    found = []
    for folder, dirs, names in os.walk(source, followlinks=False):
        relative_folder = Path(folder).relative_to(source).as_posix()
        dirs[:] = sorted(d for d in dirs
                         if not plans.excluded(d if relative_folder == "." else f"{relative_folder}/{d}", excludes))
        for name in sorted(names):
            path = Path(folder) / name
            relative = path.relative_to(source).as_posix()
            if not path.is_file() or plans.excluded(relative, excludes):
                continue
            md5, sha256 = _digests(path)
            found.append(LocalFile(key=plans.key_for(prefix, relative), path=str(path), size=path.stat().st_size,
                                   md5=md5, sha256=sha256, content_type=plans.content_type(name)))
    return found


@contextmanager
def _translated(store: Store) -> Iterator[None]:
    """boto3's exceptions as errors that name what to fix."""
    from botocore import exceptions as aws

    try:
        yield
    except aws.NoCredentialsError:
        raise RequestError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                           "(~/.aws/credentials), as for any boto3 program", "assets") from None
    except aws.EndpointConnectionError:
        raise RequestError(f"cannot reach the S3 endpoint {store.endpoint_url or 'of AWS'}: "
                           "check [assets] endpoint_url or --endpoint-url", "assets") from None
    except aws.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404") and error.operation_name == "ListObjectsV2":
            raise RequestError(f"no bucket {store.bucket} at {store.endpoint_url or 'S3'}: check [assets] bucket "
                               "or --bucket", "assets") from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise RequestError(f"S3 refused {error.operation_name} on {store.where()} ({code}): check the "
                               "credentials and their rights on the bucket", "assets") from None
        raise RequestError(f"S3 {error.operation_name} on {store.where()} failed: {error}", "assets") from None
    except aws.BotoCoreError as error:
        raise RequestError(f"S3 at {store.where()}: {error}", "assets") from None


def client(store: Store) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=store.endpoint_url, region_name=store.region)


def remote_objects(s3: Any, store: Store) -> dict[str, RemoteObject]:
    """Every object under the prefix (a folder's worth: ``prefix/``, never ``prefixmore``)."""
    listing_prefix = f"{store.prefix}/" if store.prefix else ""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=listing_prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = RemoteObject(key=item["Key"], size=int(item["Size"]),
                                              etag=str(item.get("ETag", "")).strip('"'))
    return found


def _with_metadata(s3: Any, store: Store, remote: RemoteObject) -> RemoteObject:
    head = s3.head_object(Bucket=store.bucket, Key=remote.key)
    return RemoteObject(key=remote.key, size=remote.size, etag=remote.etag,
                        sha256=head.get("Metadata", {}).get(plans.SHA256_KEY), metadata_read=True)


def decide(s3: Any, store: Store, files: list[LocalFile], *, delete: bool) -> Plan:
    """The plan, with the files the listing could not judge judged by their metadata."""
    remote = remote_objects(s3, store)
    first = plans.plan(files, remote, delete=delete)
    if not first.ask:
        return first
    with ThreadPoolExecutor(WORKERS) as pool:
        read = list(pool.map(lambda f: _with_metadata(s3, store, remote[f.key]), first.ask))
    remote.update({item.key: item for item in read})
    return plans.plan(files, remote, delete=delete)


def _upload(s3: Any, store: Store, item: LocalFile) -> None:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=plans.MULTIPART_THRESHOLD)
    s3.upload_file(item.path, store.bucket, item.key, Config=config,
                   ExtraArgs={"ContentType": item.content_type, "Metadata": {plans.SHA256_KEY: item.sha256}})


def push(store: Store, source: Path, *, delete: bool = False, dry_run: bool = False, excludes: Sequence[str] = (),
         on_upload: Callable[[LocalFile], None] | None = None) -> PushResult:
    """New and changed files up, unchanged ones left, vanished ones deleted when asked."""
    files = local_files(source, store.prefix, excludes)
    with _translated(store):
        s3 = client(store)
        plan = decide(s3, store, files, delete=delete)
        if dry_run:
            return PushResult(uploaded=plan.upload, unchanged=plan.unchanged, deleted=plan.delete)

        def send(item: LocalFile) -> None:
            _upload(s3, store, item)
            if on_upload is not None:
                on_upload(item)

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(send, plan.upload))
        for start in range(0, len(plan.delete), 1000):
            batch = plan.delete[start:start + 1000]
            answer = s3.delete_objects(Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in batch],
                                                                    "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RequestError(f"S3 did not delete {len(answer['Errors'])} object(s), {first.get('Key')} "
                                   f"first: {first.get('Code')} {first.get('Message', '')}", "assets")
    return PushResult(uploaded=plan.upload, unchanged=plan.unchanged, deleted=plan.delete)
