"""The `farmhand` command. `check` and `up` work on the farm file; every other verb is a
client of the running controller's API, found through the farm's .farmhand/ folder: beside
``--farm FILE`` (before or after the verb, or $FARMHAND_FILE), else in this folder or above.

Each verb imports what it needs when it runs (the HTTP client, rich, the spec, the
controller), so `farmhand --help` and `farmhand status` start fast; bench/cli_speed.py
measures that.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from farmhand import __version__
from farmhand.cli import change, deploy, fleet, fleet_assets, fleet_cssh, fleet_shell, run, watch
from farmhand.cli.common import FARM_ENV, FARM_HELP, remember_farm_option
from farmhand.errors import FarmhandError, SpecError


def main() -> None:
    try:
        code = cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except SpecError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(error.problems)} problem(s)", err=True)
        sys.exit(error.exit_code)
    except FarmhandError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="farmhand", message="%(prog)s %(version)s")
@click.option("--farm", type=click.Path(dir_okay=False, path_type=Path), envvar=FARM_ENV, expose_value=False,
              callback=remember_farm_option, help=FARM_HELP)
def cli() -> None:
    """farmhand: declare a farm in one TOML file; farmhand runs, heals and balances it."""


for command in (run.check, run.up, watch.status, watch.events, watch.logs, change.scale, change.stop,
                change.replace, change.reload, run.down, watch.hosts, change.migrate, change.drain_host,
                change.undrain_host, change.load, run.dashboard):
    cli.add_command(command)
for command in (fleet.nodeset, fleet.exec_, fleet.sync, fleet.rollback):
    cli.add_command(command)
cli.add_command(fleet_shell.shell)
cli.add_command(fleet_cssh.cssh)
cli.add_command(fleet_assets.assets)
cli.add_command(deploy.deploy)
