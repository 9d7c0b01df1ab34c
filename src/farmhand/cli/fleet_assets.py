"""`farmhand assets push SRC`: a site's static files to S3, only what is new or changed
(``farmhand.fleet.assets``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from farmhand.cli.common import farm_option
from farmhand.cli.fleet import _farm_spec
from farmhand.errors import StateError


@click.group()
def assets() -> None:
    """Static files to S3 (or a store that speaks its API)."""


@assets.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--bucket", help="The bucket (default: [assets] bucket in the farm file).")
@click.option("--prefix", help="Key prefix: files go to PREFIX/relative/path (default: [assets] prefix).")
@click.option("--endpoint-url", help="An S3-compatible store's URL (default: [assets] endpoint_url, else AWS).")
@click.option("--region", help="The bucket's region (default: [assets] region, else boto3's).")
@click.option("--delete", is_flag=True, help="Delete objects under the prefix that SOURCE no longer has.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be uploaded and deleted; change nothing.")
@click.option("--exclude", "excludes", multiple=True, help="A pattern of files to leave out (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@farm_option
@click.pass_context
def push(ctx: click.Context, source: Path, bucket: str | None, prefix: str | None, endpoint_url: str | None,
         region: str | None, delete: bool, dry_run: bool, excludes: tuple[str, ...], as_json: bool) -> None:
    """Upload SOURCE's new and changed files; unchanged ones (same size and checksum) stay.

    Content types come from the file names. Credentials come from boto3's usual chain
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role), never the
    farm file."""
    from farmhand.errors import RequestError
    from farmhand.fleet import assets as pushing
    from farmhand.fleet import assets_plan
    from farmhand.spec.assets import AssetsSpec, check_bucket, clean_prefix

    try:
        spec = _farm_spec(ctx).assets
    except StateError:
        spec = AssetsSpec()
    try:
        store = pushing.Store(bucket=check_bucket(bucket) if bucket else spec.bucket or "",
                              prefix=clean_prefix(prefix) if prefix is not None else spec.prefix,
                              endpoint_url=endpoint_url or spec.endpoint_url, region=region or spec.region)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if not store.bucket:
        raise RequestError("no bucket: give --bucket, or bucket = \"...\" under [assets] in the farm file", "bucket")
    result = pushing.push(store, source, delete=delete, dry_run=dry_run, excludes=excludes)
    text = assets_plan.summary(len(result.uploaded), len(result.unchanged), len(result.deleted),
                               dry_run=dry_run, delete=delete)
    if as_json:
        click.echo(json.dumps({"where": store.where(), "dry_run": dry_run,
                               "uploaded": [{"key": f.key, "content_type": f.content_type, "size": f.size}
                                            for f in result.uploaded],
                               "unchanged": [f.key for f in result.unchanged], "deleted": result.deleted}))
        return
    verb, gone = ("would upload", "would delete") if dry_run else ("uploaded", "deleted")
    for item in result.uploaded:
        click.echo(f"{verb} {item.key} ({item.content_type}, {item.size} bytes)")
    for key in result.deleted:
        click.echo(f"{gone} {key}")
    click.echo(f"{store.where()}: {text}")
