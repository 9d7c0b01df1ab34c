"""What every verb shares: which farm it means, its client, its console.

Imports stay light here on purpose: `farmhand --help` loads this module and nothing
heavier than click; the state folder, the HTTP client and rich come in with the verb that
uses them.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from farmhand.errors import StateError

if TYPE_CHECKING:
    from rich.console import Console

    from farmhand.cli.client import ApiClient
    from farmhand.store.statedir import StateDir

FARM_ENV = "FARMHAND_FILE"
"""Not FARMHAND_FARM: that one is the farm id every node carries in its environment."""
DEFAULT_FARM = "farm.toml"
FARM_HELP = "The farm file (its .farmhand/ folder is used), before or after the verb. " \
            "Default: $FARMHAND_FILE, else .farmhand/ in this folder or above."


def remember_farm_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Keep ``--farm`` wherever it was given (the group's or a verb's; the verb's wins)."""
    if value is None:
        return
    source = ctx.get_parameter_source(param.name or "farm")
    from_env = source is click.core.ParameterSource.ENVIRONMENT
    root = ctx.find_root()
    root.meta["farmhand.farm"] = value
    root.meta["farmhand.farm_from_env"] = from_env


def farm_option(command: Any) -> Any:
    """``--farm FILE`` on a verb, so it works after the verb as well as before it."""
    return click.option("--farm", type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                        callback=remember_farm_option, help=FARM_HELP)(command)


def given_farm(ctx: click.Context) -> Path | None:
    farm: Path | None = ctx.find_root().meta.get("farmhand.farm")
    return farm


def farm_file_for(ctx: click.Context, positional: Path | None, verb: str) -> Path:
    """The farm file `check` and `up` work on: the argument, else --farm / $FARMHAND_FILE,
    else ./farm.toml when it exists; never a silent guess at a file that is not there."""
    given = given_farm(ctx)
    if positional is not None:
        if given is not None and not ctx.find_root().meta.get("farmhand.farm_from_env") \
                and given.resolve() != positional.resolve():
            raise click.UsageError(f"two farm files given: {positional} and --farm {given}; give one")
        return positional
    if given is not None:
        return given
    if Path(DEFAULT_FARM).is_file():
        return Path(DEFAULT_FARM)
    raise click.UsageError(f"no farm file given, and there is no ./{DEFAULT_FARM} in {Path.cwd()}: "
                           f"`farmhand {verb} FILE` (or --farm FILE, or set {FARM_ENV})")


def state_for(ctx: click.Context) -> StateDir:
    """The state folder a verb reads: beside --farm's file, else found from here upwards."""
    from farmhand.store.statedir import StateDir

    farm = given_farm(ctx)
    if farm is None:
        return StateDir.find()
    if not farm.is_file():
        raise StateError(f"--farm {farm}: no such file")
    return StateDir.beside(farm)


def client_for(ctx: click.Context, state: StateDir | None = None) -> ApiClient:
    """A client of the running controller; a farm that is down says so, and how to go on."""
    from farmhand.cli.client import ApiClient

    state = state or state_for(ctx)
    if state.controller_pid() is None:
        raise StateError(f"farm {state.farm_name()} is down (no controller runs in {folder_name(state.path.parent)}); "
                         f"`{start_command(state)}` starts it; `farmhand events` and `farmhand logs NODE` "
                         "read its history")
    return ApiClient(state)


def start_command(state: StateDir) -> str:
    farm_file = state.remembered_farm().get("farm_file")
    return f"farmhand up {display(Path(farm_file))}" if farm_file else "farmhand up FILE"


def display(path: Path) -> str:
    """A path as the user would type it from here (relative when that is shorter)."""
    try:
        relative = os.path.relpath(path, Path.cwd())
    except ValueError:
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def folder_name(folder: Path) -> str:
    """A folder for a sentence: "this folder", or its path from here."""
    return "this folder" if folder.resolve() == Path.cwd().resolve() else display(folder)


def on_path() -> str | None:
    """None when `farmhand` on the PATH is this one; else what puts it there (the demo runs
    .venv/bin/farmhand by its path, and the user's shell does not know it yet)."""
    import shutil

    script = Path(sys.executable).parent / "farmhand"
    found = shutil.which("farmhand")
    if found and (not script.exists() or Path(found).resolve() == script.resolve()):
        return None
    activate = Path(sys.prefix) / "bin" / "activate"
    if sys.prefix != sys.base_prefix and activate.exists():
        return f"`source {display(activate)}` (puts farmhand on the PATH)"
    return f"`export PATH={display(script.parent)}:$PATH`"


def how_to_reach(farm_file: Path) -> str:
    """The command that reaches this farm from the current folder, and the other way."""
    folder = farm_file.resolve().parent
    if folder == Path.cwd().resolve():
        reach = "`farmhand status` in this folder"
    else:
        reach = f"`farmhand --farm {display(farm_file)} status` from here, or `cd {display(folder)}` and `farmhand status`"
    setup = on_path()
    return f"{setup}, then {reach}" if setup else reach


@cache
def console() -> Console:
    """Piped output (scripts, tests, `| less`) gets whole tables rather than 80 columns of
    truncated names; a terminal gets its own width."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def say(text: str) -> None:
    """Plain text (an API's message may hold brackets that rich would take for markup)."""
    click.echo(text)
