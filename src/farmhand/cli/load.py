"""``farmhand load URL``: a small HTTP load generator, to watch a role scale.

With ``--rps N`` the load is an open loop: request i starts at start + i / N whatever the
answers, the way independent users arrive, so an overloaded farm shows up as rising latency
and requests in flight rather than as a politely slower client. ``--concurrency`` caps the
requests in flight; a start that had to wait for a free slot is counted as *late* (the
server is not keeping up with the asked rate). ``--rps 0`` sends as fast as the concurrency
allows (a closed loop). A live line shows the last second; the summary counts every answer,
and, when the answers carry an ``X-Node`` header (the demo app's), how many each node gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
from rich.console import Console
from rich.live import Live
from rich.text import Text

from farmhand.units import parse_duration

LIVE_WINDOW = 1.0
"""Seconds of answers the live line summarises."""


@dataclass
class Tally:
    """Every answer so far, plus the recent ones for the live line."""

    ok: int = 0
    errors: int = 0
    late: int = 0
    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    """"200", "503", "ConnectError"..."""
    nodes: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, float, bool]] = field(default_factory=deque)
    """(finished at, latency, ok) for the last LIVE_WINDOW seconds."""

    def add(self, finished: float, latency: float, answer: str, ok: bool, node: str | None) -> None:
        self.ok += ok
        self.errors += not ok
        self.latencies.append(latency)
        self.answers[answer] += 1
        if node:
            self.nodes[node] += 1
        self.recent.append((finished, latency, ok))

    def last_second(self, now: float) -> tuple[float, list[float]]:
        while self.recent and now - self.recent[0][0] > LIVE_WINDOW:
            self.recent.popleft()
        return len(self.recent) / LIVE_WINDOW, [latency for _, latency, _ in self.recent]


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class LoadRun:
    """One run against one URL; ``run()`` returns the summary (see ``summary``)."""

    def __init__(self, url: str, rps: float, duration: float, concurrency: int, timeout: float,
                 node_header: str = "X-Node") -> None:
        self.url = url
        self.rps = rps
        self.duration = duration
        self.concurrency = concurrency
        self.timeout = timeout
        self.node_header = node_header
        self.tally = Tally()
        self.in_flight = 0
        self.started = 0.0
        self.elapsed = 0.0
        self._stop = asyncio.Event()

    def __repr__(self) -> str:
        return f"<LoadRun {self.url} [ok: {self.tally.ok} | errors: {self.tally.errors} | in flight: {self.in_flight}]>"

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout, trust_env=False) as client:
            async with asyncio.TaskGroup() as requests:
                self.started = loop.time()
                sent = 0
                while not self._stop.is_set():
                    if self.rps > 0:
                        due = self.started + sent / self.rps
                        if due - self.started >= self.duration:
                            break
                        if due > loop.time():
                            await asyncio.sleep(due - loop.time())
                    elif loop.time() - self.started >= self.duration:
                        break
                    if slots.locked():
                        self.tally.late += self.rps > 0
                    await slots.acquire()
                    requests.create_task(self._one(client, slots))
                    sent += 1
        self.elapsed = loop.time() - self.started
        return self.summary()

    async def _one(self, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        self.in_flight += 1
        began = time.perf_counter()
        node = None
        try:
            response = await client.get(self.url)
            answer, ok = str(response.status_code), response.status_code < 400
            node = response.headers.get(self.node_header)
        except httpx.HTTPError as error:
            answer, ok = type(error).__name__, False
        finally:
            self.in_flight -= 1
            slots.release()
        finished = time.perf_counter()
        self.tally.add(finished, finished - began, answer, ok, node)

    def live_line(self) -> Text:
        now = time.perf_counter()
        rate, recent = self.tally.last_second(now)
        elapsed = asyncio.get_running_loop().time() - self.started if self.started else 0.0
        line = Text(f"{elapsed:5.1f}s  {rate:6.1f} req/s  p50 {_ms(percentile(recent, 0.5))}  "
                    f"p95 {_ms(percentile(recent, 0.95))}  ")
        line.append(f"errors {self.tally.errors}", style="red" if self.tally.errors else "green")
        line.append(f"  in flight {self.in_flight}" + (f"  late {self.tally.late}" if self.tally.late else ""))
        return line

    def summary(self) -> dict[str, Any]:
        latencies = self.tally.latencies
        done = self.tally.ok + self.tally.errors
        return {
            "url": self.url, "duration_s": round(self.elapsed, 3), "requests": done, "ok": self.tally.ok,
            "errors": self.tally.errors, "late": self.tally.late,
            "rps": round(done / self.elapsed, 2) if self.elapsed else 0.0,
            "latency_ms": {name: None if (v := percentile(latencies, q)) is None else round(v * 1000, 3)
                           for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},
            "answers": dict(self.tally.answers.most_common()),
            "nodes": dict(sorted(self.tally.nodes.items())),
        }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _duration(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


async def _run(run: LoadRun, console: Console | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, run.stop)
    if console is None:
        return await run.run()
    with Live(run.live_line(), console=console, refresh_per_second=4, transient=True) as live:
        task = asyncio.ensure_future(run.run())
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            live.update(run.live_line())
        return task.result()


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    errors = f"[red]{summary['errors']} errors[/]" if summary["errors"] else "[green]0 errors[/]"
    console.print(f"{summary['url']}: {summary['duration_s']:.1f}s, {summary['requests']} requests "
                  f"({summary['rps']:.1f} req/s), {errors}" + (f", {summary['late']} late" if summary["late"] else ""))
    console.print(f"latency  p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}",
                  highlight=False)
    console.print("answers  " + "  ".join(f"{k} x{v}" for k, v in summary["answers"].items()), highlight=False)
    if summary["nodes"]:
        console.print("nodes    " + "  ".join(f"{k} {v}" for k, v in summary["nodes"].items()), highlight=False)


def run_load(url: str, rps: float, duration: str, concurrency: int, timeout: str, as_json: bool) -> None:
    """`farmhand load` (its options are declared in cli/change.py, so `--help` stays fast)."""
    try:
        seconds, wait = _duration(duration), _duration(timeout)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    console = Console(stderr=True)
    run = LoadRun(url, rps, seconds, concurrency, wait)
    summary = asyncio.run(_run(run, None if as_json or not console.is_terminal else console))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_summary(Console(), summary)
    if summary["requests"] and not summary["ok"]:
        raise SystemExit(1)
