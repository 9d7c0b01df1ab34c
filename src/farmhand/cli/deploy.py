"""`farmhand deploy ROLE`: start a deploy on the running controller and follow it.

The deploy runs in the controller (it outlives this command: ^C stops following, not the
deploy); this command prints its ``deploy.*`` and node events as they come and ends with the
deploy's outcome. Exit status: 0 deployed, 1 failed (rolled back or not: the last lines say).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import click

from farmhand.cli.common import client_for, farm_option

FOLLOW_POLL = 0.5
SHOWN_KINDS = ("deploy.", "node.replace", "node.created", "node.started", "node.ready", "node.draining",
               "node.stopping", "node.stopped", "node.unhealthy", "node.failed")


@click.command()
@click.argument("role")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would change on each host and which nodes would move.")
@click.option("--json", "as_json", is_flag=True, help="Only the final report, as one JSON object.")
@farm_option
@click.pass_context
def deploy(ctx: click.Context, role: str, dry_run: bool, as_json: bool) -> int:
    """Send ROLE's release ([roles.ROLE.deploy]) to its hosts, then replace its nodes one at a
    time through the load balancer; a new node that fails its check rolls everything back."""
    client = client_for(ctx)
    client.timeout = None  # type: ignore[assignment]  # a dry run's rsync on many hosts may take a while
    path = f"/api/roles/{quote(role, safe='')}/deploy"
    if dry_run:
        answer = client.post(path, {"dry_run": True})
        _show_dry_run(answer, as_json)
        return int(answer.get("status") or 0)
    newest = client.get("/api/events", limit=1)
    after = int(newest[-1]["seq"]) if newest else 0
    report = client.post(path, {"dry_run": False})
    if not as_json:
        click.echo(f"deploying role {role}: release {report['release']}")
    while report.get("status") is None:
        time.sleep(FOLLOW_POLL)
        for event in client.get("/api/events", after=after, limit=1000):
            after = max(after, int(event["seq"]))
            if not as_json and event.get("role") == role and event["kind"].startswith(SHOWN_KINDS):
                click.echo(f"  {event['kind']:<20} {event['message']}")
        report = client.get(path)
    if as_json:
        click.echo(json.dumps(report))
    else:
        _show_end(report)
    return int(report["status"])


def _show_dry_run(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(answer))
        return
    click.echo(answer.get("message", ""))
    for row in answer.get("hosts", []):
        click.echo(f"--- {row['host']} (exit {row['status']})" + (f": {row['error']}" if row.get("error") else ""))
        if row.get("output"):
            click.echo(row["output"].rstrip("\n"))
    if answer.get("replace"):
        click.echo("nodes to replace, in order: " + ", ".join(answer["replace"]))


def _show_end(report: dict[str, Any]) -> None:
    bad_hosts = [r for r in report.get("hosts", []) if r["status"] != 0]
    for row in bad_hosts:
        click.echo(f"  sync failed on {row['host']}: {row.get('error') or row.get('output', '').strip()}", err=True)
    if report["status"] == 0:
        click.echo(report["message"])
        return
    click.echo(f"deploy failed ({report['state']}): {report['message']}", err=True)
