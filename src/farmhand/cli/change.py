"""Verbs that change a running farm by hand, and `load`, which drives traffic at it."""

from __future__ import annotations

from typing import Any

import click

from farmhand.cli.common import client_for, farm_option, say


def _say(answer: dict[str, Any], default: str) -> None:
    say(answer.get("message") or default)


def _part(name: str) -> str:
    """A name as one URL path segment (a slash in it must not reach another route)."""
    from urllib.parse import quote

    return quote(name, safe="")


@click.command()
@click.argument("role")
@click.argument("count", type=click.IntRange(min=0))
@farm_option
@click.pass_context
def scale(ctx: click.Context, role: str, count: int) -> None:
    """Set how many nodes ROLE runs."""
    answer = client_for(ctx).post(f"/api/roles/{_part(role)}/scale", {"count": count})
    _say(answer, f"role {role}: {answer.get('before')} -> {answer.get('after')} nodes")


@click.command()
@click.argument("node")
@farm_option
@click.pass_context
def stop(ctx: click.Context, node: str) -> None:
    """Drain and stop NODE for good (its role wants one node fewer)."""
    _say(client_for(ctx).post(f"/api/nodes/{_part(node)}/stop"), f"{node} stopping")


@click.command()
@click.argument("node")
@farm_option
@click.pass_context
def replace(ctx: click.Context, node: str) -> None:
    """Start a new node for NODE's role, then drain and stop NODE."""
    _say(client_for(ctx).post(f"/api/nodes/{_part(node)}/replace"), f"{node} will be replaced")


@click.command()
@farm_option
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Apply the edited farm file; a broken one is refused and nothing changes."""
    answer = client_for(ctx).post("/api/reload")
    changes = answer.get("changes") or []
    say("reloaded: " + ("; ".join(changes) if changes else "no changes"))


@click.command()
@click.argument("node")
@click.option("--to", "host", required=True, help="The host the node moves to.")
@farm_option
@click.pass_context
def migrate(ctx: click.Context, node: str, host: str) -> None:
    """Move NODE to another host without dropping a request."""
    _say(client_for(ctx).post(f"/api/nodes/{_part(node)}/migrate", {"host": host}), f"{node} moving to {host}")


@click.command("drain-host")
@click.argument("host")
@farm_option
@click.pass_context
def drain_host(ctx: click.Context, host: str) -> None:
    """Move every node off HOST (maintenance) and place no new ones there."""
    _say(client_for(ctx).post(f"/api/hosts/{_part(host)}/drain"), f"host {host} drained")


@click.command("undrain-host")
@click.argument("host")
@farm_option
@click.pass_context
def undrain_host(ctx: click.Context, host: str) -> None:
    """Let placement use HOST again."""
    _say(client_for(ctx).post(f"/api/hosts/{_part(host)}/undrain"), f"host {host} undrained")


def check_url(url: str) -> str:
    """`load` sends HTTP: a bare host:port is the usual slip, so name the fix."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        hint = "" if scheme else f": try http://{url}"
        raise click.BadParameter(f"{url!r}: a URL needs http:// (or https://){hint}", param_hint="URL")
    return url


@click.command()
@click.argument("url")
@click.option("--rps", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Requests per second to send (an open loop); 0: as fast as --concurrency allows.")
@click.option("--duration", "-d", default="30s", show_default=True, help='How long: "30s", "2m".')
@click.option("--concurrency", "-c", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="Most requests in flight at once.")
@click.option("--timeout", default="10s", show_default=True, help="Longest wait for one answer.")
@click.option("--json", "as_json", is_flag=True, help="No live line; the summary as one JSON object.")
def load(url: str, rps: float, duration: str, concurrency: int, timeout: str, as_json: bool) -> None:
    """Send HTTP GET load at URL (a role's load balancer) and show requests/s, latency and errors."""
    from farmhand.cli.load import run_load

    run_load(check_url(url), rps, duration, concurrency, timeout, as_json)
