"""`farmhand shell TARGET`: a prompt whose every line runs on all targets at once (clush's
interactive mode is the model).

    CMD          run on every target; answers gathered (equal ones once) or prefixed
    ?            show the targets
    @SET         targets become SET (any target syntax)      +SET / -SET  add / remove hosts
    !CMD         run CMD here, on this machine                =            toggle gathering
    quit, exit, Ctrl-D: leave

Lines go through the running controller when there is one (its open connections), else over
connections this command opens once and keeps for the whole session. History is readline's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import click

from farmhand.cli.common import farm_option
from farmhand.cli.fleet import _controller, _farm_spec
from farmhand.errors import FarmhandError


class _Session:
    def __init__(self, ctx: click.Context, target: str, direct: bool, timeout: float) -> None:
        from farmhand.fleet import targets

        self.spec = _farm_spec(ctx)
        self.client = None if direct else _controller(ctx)
        self.inventory = targets.inventory_of(self.spec)
        self.hosts = targets.hosts_of(target, self.inventory)
        self.gathered = True
        self.timeout = timeout
        self.executors: dict[str, Any] = {}

    def change(self, line: str) -> str:
        from farmhand.fleet import targets

        sign, pattern = line[0], line[1:].strip()
        named = targets.hosts_of(pattern, self.inventory)
        if sign == "@":
            self.hosts = named
        elif sign == "+":
            self.hosts += [h for h in named if h not in self.hosts]
        else:
            self.hosts = [h for h in self.hosts if h not in named]
        return self.describe()

    def describe(self) -> str:
        from farmhand.fleet import targets

        return f"targets: {targets.fold(self.hosts) or 'none'} ({len(self.hosts)})"

    async def run(self, line: str) -> str:
        from farmhand.fleet import direct, gather, run

        if not self.hosts:
            return "no targets: add some with +SET\n"
        if self.client is not None:
            answer = await asyncio.to_thread(self.client.post, "/api/fleet/exec", {
                "target": ",".join(self.hosts), "command": line, "timeout": self.timeout})
            results = [gather.HostResult.from_json(row) for row in answer["results"]]
        else:
            missing = [h for h in self.hosts if h not in self.executors]
            self.executors.update(direct.direct_fleet(self.spec, missing, 10.0).executors)
            results = await run.run_all({h: self.executors[h] for h in self.hosts}, line, timeout=self.timeout)
        if self.gathered:
            text = gather.gathered_text(results)
        else:
            text = "".join(f"{row}\n" for result in results for row in gather.prefixed(result))
        return text + gather.problems_text(results)

    async def close(self) -> None:
        from farmhand.fleet import direct

        await direct.DirectFleet(self.executors).close()


def _read(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


async def _loop(session: _Session) -> None:
    try:
        import readline  # noqa: F401  (history and line editing for input())
    except ImportError:
        pass
    click.echo(f"{session.describe()}; ? shows them, @SET +SET -SET change them, = toggles gathering, "
               "!CMD runs here, quit leaves")
    try:
        while True:
            line = await asyncio.to_thread(_read, "farmhand> ")
            if line is None or line.strip() in ("quit", "exit"):
                click.echo("")
                return
            line = line.strip()
            try:
                if not line:
                    continue
                if line == "?":
                    click.echo(session.describe())
                elif line == "=":
                    session.gathered = not session.gathered
                    click.echo(f"gathering {'on' if session.gathered else 'off'}")
                elif line[0] in "@+-":
                    click.echo(session.change(line))
                elif line[0] == "!":
                    subprocess.run(line[1:], shell=True, check=False)
                else:
                    click.echo(await session.run(line), nl=False)
            except FarmhandError as error:
                click.echo(f"error: {error}", err=True)
            sys.stdout.flush()
    finally:
        await session.close()


@click.command()
@click.argument("target")
@click.option("--direct", is_flag=True, help="Connect from here even when the controller runs.")
@click.option("-u", "--timeout", "command_timeout", default="1h", show_default=True,
              help="Longest a line may run on a host; then it is killed.")
@farm_option
@click.pass_context
def shell(ctx: click.Context, target: str, direct: bool, command_timeout: str) -> None:
    """A prompt whose every line runs on all of TARGET at once (like clush's interactive mode).

    ? shows the targets, @SET sets them, +SET and -SET add and remove hosts, = toggles
    gathering, !CMD runs CMD here; quit, exit or Ctrl-D leave."""
    from farmhand.units import parse_duration

    session = _Session(ctx, target, direct, parse_duration(command_timeout))
    asyncio.run(_loop(session))
