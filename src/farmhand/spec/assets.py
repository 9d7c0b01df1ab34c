"""``[assets]``: where `farmhand assets push` puts a site's static files (S3 or a store that
speaks its API).

    [assets]
    bucket = "shop-static"
    prefix = "v2/static"                   # keys are prefix/relative/path; "" for the root
    endpoint_url = "https://s3.example.net" # only for S3-compatible stores (MinIO, Ceph...)
    region = "eu-west-1"

Every key may also be given on the command line, which wins. Credentials never go here: they
come from boto3's usual chain (environment, ~/.aws/, an instance role).
"""

from __future__ import annotations

import re

from pydantic import field_validator

from farmhand.spec.types import Strict

BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3's bucket names: 3 to 63 lower-case letters, digits, dots and hyphens."""


def check_bucket(value: str) -> str:
    if not BUCKET_PATTERN.fullmatch(value) or ".." in value:
        raise ValueError(f"{value!r} is not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-', "
                         "starting and ending with a letter or digit)")
    return value


def clean_prefix(value: str) -> str:
    """``/v2/static/`` -> ``v2/static``: keys are joined to it with one ``/``."""
    cleaned = value.strip("/")
    if any(part in ("", ".", "..") for part in cleaned.split("/")) and cleaned:
        raise ValueError(f"{value!r} is not a key prefix: no empty, '.' or '..' parts")
    return cleaned


class AssetsSpec(Strict):
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    """Only for S3-compatible stores; AWS's own endpoint otherwise."""
    region: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        return None if value is None else check_bucket(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return clean_prefix(value)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an endpoint URL (http://host:port or https://host)")
        return value
