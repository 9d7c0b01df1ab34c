"""Fleet verbs: `nodeset`, `exec`, `sync`, `rollback` (issue 13).

With a controller up, `exec` goes through its API (the drivers' connections are open: no
handshake). Without one, the CLI connects itself with the farm file's host tables through
``farmhand.fleet`` (a layer beside the controller that the faces contract allows: it holds no
farm state, only connections of its own) — as `--direct` also asks.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from farmhand.cli.common import farm_option, given_farm, state_for
from farmhand.errors import StateError

if TYPE_CHECKING:
    from farmhand.fleet.gather import HostResult
    from farmhand.fleet.workers import WorkerPool
    from farmhand.spec.models import FarmSpec


def _farm_spec(ctx: click.Context) -> FarmSpec:
    """The farm file's contents (see ``_farm_file``)."""
    from farmhand.spec.load import load_farm

    return load_farm(_farm_file(ctx))


def _farm_file(ctx: click.Context) -> Path:
    """The farm file: --farm, else the one the farm's .farmhand/ remembers, else ./farm.toml."""
    farm = given_farm(ctx)
    if farm is None:
        try:
            remembered = state_for(ctx).remembered_farm().get("farm_file")
        except StateError:
            remembered = None
        farm = Path(remembered) if remembered else Path("farm.toml")
    if not farm.is_file():
        raise StateError(f"no farm file {farm}: give --farm FILE (its hosts and [groups] are the targets)")
    return farm


def _controller(ctx: click.Context) -> Any:
    """A client of the running controller, or None when none runs here."""
    from farmhand.cli.client import ApiClient

    try:
        state = state_for(ctx)
    except StateError:
        return None
    if state.controller_pid() is None:
        return None
    return ApiClient(state, timeout=None)  # type: ignore[arg-type]


@click.command()
@click.argument("patterns", nargs=-1, required=True)
@click.option("-e", "--expand", "mode", flag_value="expand", help="One name per word, space separated.")
@click.option("-f", "--fold", "mode", flag_value="fold", default=True, help="Folded (the default).")
@click.option("-c", "--count", "mode", flag_value="count", help="How many.")
@farm_option
@click.pass_context
def nodeset(ctx: click.Context, patterns: tuple[str, ...], mode: str) -> None:
    """Expand, fold or count node sets (web[01-20], @group, @role, a&b, a!b); for scripts.

    @group and @role come from the farm file (roles: the hosts they may run on); without a
    farm file only plain patterns work."""
    from farmhand.fleet import targets

    try:
        inventory = targets.inventory_of(_farm_spec(ctx))
    except StateError:
        inventory = targets.Inventory()
    names = targets.expand(",".join(patterns), inventory)
    if mode == "expand":
        click.echo(" ".join(names))
    elif mode == "count":
        click.echo(str(len(names)))
    else:
        click.echo(targets.fold(names))


class _Progress:
    """`3/50 done; waiting for h[7,9]` on stderr once stragglers have kept us a second."""

    def __init__(self, hosts: list[str], enabled: bool) -> None:
        self.left = list(hosts)
        self.total = len(hosts)
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.shown = False

    def done(self, host: str) -> None:
        if host in self.left:
            self.left.remove(host)

    async def run(self) -> None:
        from farmhand.fleet.gather import progress_text

        if not self.enabled:
            return
        await asyncio.sleep(1.0)
        while self.left:
            line = progress_text(self.total - len(self.left), self.total, self.left)
            sys.stderr.write(f"\r\x1b[K{line}" if self.tty else f"{line}\n")
            sys.stderr.flush()
            self.shown = True
            await asyncio.sleep(1.0)

    def clear(self) -> None:
        if self.shown and self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


async def _direct_exec(spec: FarmSpec, hosts: list[str], command: str, *, timeout: float, connect_timeout: float,
                       fanout: int, stream: bool, progress: bool, pool: WorkerPool | None) -> list[HostResult]:
    from farmhand.fleet import direct, gather, run

    fleet = direct.direct_fleet(spec, hosts, connect_timeout, pool)
    meter = _Progress(hosts, progress)

    def show(result: HostResult) -> None:
        meter.done(result.host)
        if stream and result.reached:
            meter.clear()
            lines = gather.prefixed(result)
            if lines:
                click.echo("\n".join(lines))

    ticker = asyncio.ensure_future(meter.run())
    try:
        return await run.run_all(fleet.executors, command, timeout=timeout, fanout=fanout, on_result=show)
    finally:
        ticker.cancel()
        meter.clear()
        await fleet.close()


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-b", "--gather", "gathered", is_flag=True, help="Equal answers once, under their folded hosts.")
@click.option("--json", "as_json", is_flag=True, help="Every host's status and output as one JSON object.")
@click.option("-f", "--fanout", default=64, show_default=True, type=click.IntRange(1, 1024),
              help="Most hosts at work at once.")
@click.option("-t", "--connect-timeout", default="10s", show_default=True, help="Longest wait for a host to answer.")
@click.option("-u", "--timeout", "command_timeout", default="1h", show_default=True,
              help="Longest a command may run; then it is killed (its whole process group).")
@click.option("--direct", is_flag=True, help="Connect from here even when the controller runs.")
@click.option("--progress/--no-progress", default=None, help="The waiting line on stderr (default: on a terminal).")
@farm_option
@click.pass_context
def exec_(ctx: click.Context, target: str, command: tuple[str, ...], gathered: bool, as_json: bool, fanout: int,
          connect_timeout: str, command_timeout: str, direct: bool, progress: bool | None) -> int:
    """Run COMMAND on every host TARGET names: `farmhand exec @web -- uptime`.

    TARGET: host names, @group ([groups] in the farm file), @role (the hosts running it) and
    node sets (h[1-20], h[1-9]!h3, @web&@zone-a). Exit status: the largest of the hosts'
    (255: a host not reached, 124: a command killed at its timeout)."""
    from farmhand.fleet import gather
    from farmhand.units import parse_duration

    line = " ".join(command)
    try:
        timeout, connect = parse_duration(command_timeout), parse_duration(connect_timeout)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    client = None if direct else _controller(ctx)
    show_progress = sys.stderr.isatty() if progress is None else progress
    if client is not None:
        answer = client.post("/api/fleet/exec", {"target": target, "command": line, "timeout": timeout,
                                                 "fanout": fanout})
        results = [gather.HostResult.from_json(row) for row in answer["results"]]
        if not (gathered or as_json):
            for result in results:
                if result.reached and result.output:
                    click.echo("\n".join(gather.prefixed(result)))
    else:
        from farmhand.fleet import targets, workers

        spec = _farm_spec(ctx)
        hosts = targets.hosts_of(target, targets.inventory_of(spec))
        pool = workers.fork_workers(spec, hosts, connect)  # before any loop runs here: see fleet.workers
        try:
            results = asyncio.run(_direct_exec(spec, hosts, line, timeout=timeout, connect_timeout=connect,
                                               fanout=fanout, stream=not (gathered or as_json),
                                               progress=show_progress, pool=pool))
        finally:
            if pool is not None:
                pool.kill()
    status = gather.exit_status(results)
    if as_json:
        click.echo(json.dumps({"target": target, "status": status, "results": [r.to_json() for r in results]}))
        return status
    if gathered:
        click.echo(gather.gathered_text(results), nl=False)
    problems = gather.problems_text(results)
    if problems:
        click.echo(problems, nl=False, err=True)
    return status



def _print_results(results: list[HostResult], as_json: bool) -> int:
    from farmhand.fleet import gather

    status = gather.exit_status(results)
    if as_json:
        click.echo(json.dumps({"status": status, "results": [r.to_json() for r in results]}))
        return status
    click.echo(gather.gathered_text(results), nl=False)
    problems = gather.problems_text(results)
    if problems:
        click.echo(problems, nl=False, err=True)
    return status


@click.command()
@click.argument("target")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("dest")
@click.option("--delete", is_flag=True, help="Files missing from SOURCE are not carried into the new release.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would change against each host's current release.")
@click.option("--exclude", "excludes", multiple=True, help="An rsync exclude pattern (repeatable).")
@click.option("--after", help="A command run in the new release on each host before its switch; "
                              "a host where it fails is not switched.")
@click.option("--keep", default=5, show_default=True, type=click.IntRange(1, 1000), help="Releases kept per host.")
@click.option("-f", "--fanout", default=64, show_default=True, type=click.IntRange(1, 1024))
@click.option("-t", "--connect-timeout", default="10s", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--progress/--no-progress", default=None,
              help="One progress bar for all hosts together (default: when stdout is a terminal).")
@farm_option
@click.pass_context
def sync(ctx: click.Context, target: str, source: str, dest: str, delete: bool, dry_run: bool,
         excludes: tuple[str, ...], after: str | None, keep: int, fanout: int, connect_timeout: str,
         as_json: bool, progress: bool | None) -> int:
    """Send SOURCE's contents to DEST/releases/<time> on every host of TARGET, then switch
    DEST/current to it (one atomic rename per host); the last --keep releases stay.

    On a terminal one progress bar follows all hosts together (files checked of all the
    hosts' file lists, bytes sent); a summary line says what was transferred."""
    from farmhand.fleet import direct, gather, sync_progress, targets
    from farmhand.fleet import sync as syncing
    from farmhand.units import parse_duration

    spec = _farm_spec(ctx)
    hosts = targets.hosts_of(target, targets.inventory_of(spec))
    options = syncing.SyncOptions(delete=delete, dry_run=dry_run, excludes=excludes, after=after, keep=keep,
                                  connect_timeout=parse_duration(connect_timeout), fanout=fanout)
    fleet = direct.direct_fleet(spec, hosts, options.connect_timeout)
    tally = None if dry_run else sync_progress.Tally(hosts)
    show_bar = tally is not None and not as_json and (sys.stdout.isatty() if progress is None else progress)

    async def go() -> list[HostResult]:
        bar = asyncio.ensure_future(_progress_bar(tally, targets.fold(hosts))) if show_bar and tally else None
        try:
            return await syncing.sync_all({h: spec.hosts[h] for h in hosts}, fleet.executors, source, dest, options,
                                          tally=tally)
        finally:
            if bar is not None:
                bar.cancel()
                await asyncio.gather(bar, return_exceptions=True)
            await fleet.close()

    results = asyncio.run(go())
    if tally is None:
        return _print_results(results, as_json)
    if as_json:
        overall = tally.overall()
        stats = [s for s in tally.finished.values() if s is not None]
        totals = {"files": sum(s.files for s in stats), "bytes": sum(s.bytes for s in stats),
                  "entries_checked": overall.checked}
        status = gather.exit_status(results)
        click.echo(json.dumps({"status": status, "transferred": totals, "results": [r.to_json() for r in results]}))
        return status
    status = _print_results(results, as_json)
    click.echo(sync_progress.summary(tally.finished.values(), len(hosts)))
    return status


async def _progress_bar(tally: Any, what: str) -> None:
    """One rich bar for the whole sync, redrawn from ``tally`` until cancelled (then drawn
    once more, complete)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from farmhand.fleet.sync_progress import human_bytes

    columns = (TextColumn("sync {task.description}"), BarColumn(), TextColumn("{task.fields[files]}"),
               TextColumn("{task.fields[sent]}"), TextColumn("{task.fields[hosts]}"), TimeElapsedColumn())
    with Progress(*columns, auto_refresh=False) as bar:
        task = bar.add_task(what, total=None, files="", sent="", hosts="")

        def draw() -> None:
            now = tally.overall()
            bar.update(task, total=now.entries, completed=now.checked,
                       files=f"{now.checked}/{now.entries if now.entries is not None else '?'} files",
                       sent=f"{human_bytes(now.bytes)} sent", hosts=f"{now.hosts_done}/{now.hosts} hosts done")
            bar.refresh()

        try:
            while True:
                draw()
                await asyncio.sleep(0.1)
        finally:
            draw()


@click.command()
@click.argument("target")
@click.argument("dest")
@click.option("--json", "as_json", is_flag=True)
@farm_option
@click.pass_context
def rollback(ctx: click.Context, target: str, dest: str, as_json: bool) -> int:
    """Switch DEST/current back to the release before it on every host of TARGET."""
    from farmhand.fleet import direct, targets
    from farmhand.fleet import sync as syncing

    spec = _farm_spec(ctx)
    hosts = targets.hosts_of(target, targets.inventory_of(spec))
    fleet = direct.direct_fleet(spec, hosts, 10.0)

    async def go() -> list[HostResult]:
        try:
            return await syncing.rollback_all(fleet.executors, dest)
        finally:
            await fleet.close()

    return _print_results(asyncio.run(go()), as_json)
