"""How the CLI shows things to people (rich tables); scripts use --json instead."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from farmhand.units import format_duration

HEALTH_STYLE = {"healthy": "green", "unhealthy": "red", "unknown": "yellow"}
STATE_STYLE = {"running": "green", "starting": "yellow", "pending": "yellow", "draining": "cyan", "stopping": "magenta"}


def status_tables(console: Console, status: dict[str, Any]) -> None:
    title = f"farm {status['farm']}" + (" (shutting down)" if status.get("shutting_down") else "")
    roles = Table(title=title, title_justify="left")
    for column in ("role", "wanted", "running", "healthy", "load balancer", "metrics", "note"):
        roles.add_column(column)
    for role in status["roles"]:
        note = ""
        if role.get("backoff_until"):
            note = f"backing off {format_duration(max(0, role['backoff_until'] - status['time']))} " \
                   f"({role['failures']} failures)"
        roles.add_row(role["name"], str(role["wanted"]), str(role["running"]), str(role["healthy"]), lb_text(role),
                      metrics_text(role.get("metrics") or {}), note)
    console.print(roles)
    for role in status["roles"]:
        if role.get("autoscale"):
            console.print(f"autoscale: {role['autoscale']['reason']}", highlight=False)
    nodes = Table(title="nodes", title_justify="left")
    for column in ("node", "role", "host", "pid", "port", "state", "health", "uptime", "restarts", "cpu", "rss"):
        nodes.add_column(column)
    for node in status["nodes"]:
        state = f"[{STATE_STYLE.get(node['state'], 'white')}]{node['state']}[/]"
        health = f"[{HEALTH_STYLE.get(node['health'], 'white')}]{node['health']}[/]"
        uptime = format_duration(node["uptime"]) if node.get("uptime") else "-"
        nodes.add_row(node["id"], node["role"], node["host"], str(node["pid"] or "-"), str(node["port"] or "-"),
                      state, health, uptime, str(node["restarts"]),
                      "-" if node.get("cpu") is None else f"{node['cpu']:.0f}%",
                      "-" if node.get("rss_mb") is None else f"{node['rss_mb']:.0f} MB")
    console.print(nodes)
    hosts = Table(title="hosts", title_justify="left")
    for column in ("host", "driver", "address", "state", "nodes"):
        hosts.add_column(column)
    for host in status["hosts"]:
        state = host["state"] + (f" ({host['reason']})" if host.get("reason") else "")
        hosts.add_row(host["name"], host["driver"], str(host.get("address") or "-"), state, str(host.get("nodes", "")))
    console.print(hosts)


def lb_text(role: dict[str, Any]) -> Text | str:
    """The role's balancer: its address and rate, or, when it cannot listen, "broken" and why
    (``lb_state`` / ``lb_error`` in the status; a blank would read as "no balancer")."""
    if not role.get("lb"):
        return "-"
    if role.get("lb_state") == "broken":
        text = Text(f"{role['lb']} ")
        text.append("broken", style="bold red")
        if role.get("lb_error"):
            text.append(f": {role['lb_error']}")
        return text
    stats = role.get("lb_stats") or {}
    rate = stats.get("requests_per_s")
    text = Text(f"{role['lb']}  {rate:.0f} req/s" if isinstance(rate, (int, float)) else str(role["lb"]))
    pair = role.get("lb_pair")
    if isinstance(pair, dict):
        text.append("\n")
        text.append_text(pair_text(pair))
    return text


def pair_text(pair: dict[str, Any]) -> Text:
    """A load-balancer pair in one line: "10.213.0.100 on lb2; lb1 backup", with a member in
    trouble (balancer down, out of reach, FAULT) in red and no holder at all in bold red."""
    holder = pair.get("holder")
    text = Text(f"{pair.get('vip')} ")
    if holder:
        text.append(f"on {holder}", style="green")
    else:
        text.append("held by no member", style="bold red")
    members = pair.get("members")
    others = [(name, m if isinstance(m, dict) else {}) for name, m in members.items() if name != holder] \
        if isinstance(members, dict) else []
    for index, (name, member) in enumerate(others):
        text.append("; " if index == 0 else ", ")
        words = [name, str(member.get("state") or "unknown").lower()]
        if member.get("balancer") not in (None, "running"):
            words.append(f"balancer {member['balancer']}")
        if member.get("reachable") is False:
            words.append("out of reach")
        troubled = len(words) > 2 or member.get("state") == "FAULT"
        text.append(" ".join(words), style="red" if troubled else "")
    return text


METRIC_FORMATS = {"cpu": "{:.0f}% cpu", "rss_mb": "{:.0f} MB", "requests_per_s": "{:.0f} req/s",
                  "p95_ms": "p95 {:.0f} ms", "waiting": "{:.0f} waiting"}
QUIET_METRICS = {"connections", "active_connections", "load1"}
"""Left out of the roles table (the hosts table shows load; `status --json` has them all)."""


def metrics_text(metrics: dict[str, float]) -> str:
    """The role's current metrics in a few words (external ones by their names)."""
    parts = [form.format(metrics[name]) for name, form in METRIC_FORMATS.items()
             if name in metrics and (name != "waiting" or metrics[name] > 0)]
    parts += [f"{name} {value:g}" for name, value in metrics.items()
              if name not in METRIC_FORMATS and name not in QUIET_METRICS]
    return "  ".join(parts) or "-"


def event_line(event: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event["ts"])) + f".{int(event['ts'] * 1000) % 1000:03d}"
    return f"{stamp}  {event['kind']:<18} {event['message']}"


def hosts_table(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="hosts", title_justify="left")
    for column in ("host", "driver", "address", "state", "load", "nodes used", "nodes"):
        table.add_column(column)
    for row in rows:
        state = row["state"] + (" (drained)" if row.get("drained") else "")
        if row.get("reason"):
            state += f": {row['reason']}"
        load = row.get("load")
        load_text = f"{load['load1']:.2f} / {load['cpus']} cpu" if load else "-"
        used = f"{row['used']}/{row['capacity']}" if row.get("capacity") is not None else str(row["used"])
        table.add_row(row["name"], row["driver"], str(row.get("address") or "-"), state, load_text, used,
                      ", ".join(row["nodes"]))
    console.print(table)
