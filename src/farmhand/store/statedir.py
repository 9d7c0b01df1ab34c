"""The farm's state folder, ``.farmhand/`` beside the farm file.

It holds everything a later command needs without flags: the database, node logs, the
API's address and token, the farm file it belongs to, and the controller's lock (an
``flock`` the kernel drops when the controller dies, however it dies, so a ``kill -9``
never leaves a stale lock behind).

One farm per folder: a folder's ``.farmhand/`` belongs to the farm file that `up` started
there, so two farm files in one folder would share one database and one lock.

The folder is private: 0700, and every file farmhand writes in it is 0600 (the token, the
API's address, the database, the controller's log), because node logs and the dashboard
link carry what only the farm's owner should read.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from farmhand.errors import StateError

STATE_DIR_NAME = ".farmhand"
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SEARCH_BELOW_DEPTH = 2
SEARCH_BELOW_FOLDERS = 500
"""How deep and how wide `find` looks below the current folder for running farms to suggest
(a hint in an error message must not crawl a home folder or /proc)."""


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open (creating it 0600) a file in the state folder; an older, looser file is tightened."""
    descriptor = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)
    return descriptor


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text``."""
    temporary = path.with_name(path.name + ".tmp")
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as file:
        file.write(text)
    os.replace(temporary, path)


@dataclass(frozen=True)
class StateDir:
    path: Path

    @classmethod
    def beside(cls, farm_file: Path) -> StateDir:
        return cls(farm_file.resolve().parent / STATE_DIR_NAME)

    @classmethod
    def find(cls, start: Path | None = None) -> StateDir:
        """The nearest ``.farmhand/`` in this folder or above it; when there is none, the
        error names farms running below (the demo runs from the repository's root)."""
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / STATE_DIR_NAME).is_dir():
                return cls(folder / STATE_DIR_NAME)
        hints = [cls._hint(state, here) for state in cls.running_below(here)]
        message = f"no {STATE_DIR_NAME}/ in {here} or above: run this in the farm's folder " \
                  "(where `farmhand up` ran), or pass --farm FILE (or set FARMHAND_FILE)"
        if hints:
            message += "\nfarms running below this folder:\n  " + "\n  ".join(hints)
        raise StateError(message)

    @classmethod
    def running_below(cls, here: Path, depth: int = SEARCH_BELOW_DEPTH) -> list[StateDir]:
        """State folders with a live API address at most ``depth`` folders below ``here``."""
        found: list[StateDir] = []
        folders = [here]
        for _ in range(depth):
            children: list[Path] = []
            for folder in folders[:SEARCH_BELOW_FOLDERS]:
                with contextlib.suppress(OSError):
                    children += sorted(p for p in folder.iterdir()
                                       if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                                       and p.name != "node_modules")
            found += [cls(child / STATE_DIR_NAME) for child in children
                      if (child / STATE_DIR_NAME / "api.json").is_file()]
            folders = children
        return [state for state in found if state.controller_pid() is not None]

    @staticmethod
    def _hint(state: StateDir, here: Path) -> str:
        farm_file = Path(state.read_api().get("farm_file") or state.path.parent / "farm.toml")
        relative = os.path.relpath(farm_file, here)
        return (f"`farmhand --farm {relative} status` (or `cd {os.path.relpath(farm_file.parent, here)}` "
                "and `farmhand status`)")

    @property
    def database(self) -> Path:
        return self.path / "farm.db"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def api_file(self) -> Path:
        return self.path / "api.json"

    @property
    def token_file(self) -> Path:
        return self.path / "token"

    @property
    def controller_log(self) -> Path:
        return self.path / "controller.log"

    @property
    def lock_file(self) -> Path:
        return self.path / "controller.lock"

    @property
    def farm_record(self) -> Path:
        """Which farm file this folder belongs to (kept after `down`, for reading history)."""
        return self.path / "farm.json"

    @property
    def farm_id(self) -> str:
        """Tags this farm's processes, so two farms on one machine never adopt each other's."""
        import hashlib

        return hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]

    def create(self) -> None:
        """Make the folder (0700) and its database file (0600: SQLite gives its WAL and
        shared-memory files the database's mode); tighten whatever an older farmhand left
        readable to others."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.tighten()
        os.close(open_private(self.database, os.O_RDWR | os.O_CREAT))

    def tighten(self) -> None:
        """Folders 0700, files without group or other bits; symlinks (data planes' short
        folders) are left alone."""
        os.chmod(self.path, PRIVATE_DIR)
        for root, folders, files in os.walk(self.path):
            for name in folders:
                with contextlib.suppress(OSError):
                    if not os.path.islink(os.path.join(root, name)):
                        os.chmod(os.path.join(root, name), PRIVATE_DIR)
            for name in files:
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    mode = os.lstat(path).st_mode
                    if not os.path.islink(path) and mode & 0o077:
                        os.chmod(path, mode & 0o700)

    def token(self) -> str:
        """The API token, made once and kept (0600) so restarts keep the same one."""
        if self.token_file.exists():
            return self.token_file.read_text().strip()
        import secrets

        token = secrets.token_urlsafe(24)
        descriptor = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
        return token

    def read_token(self) -> str:
        """The token if the farm has one ("" otherwise: reads need none)."""
        try:
            return self.token_file.read_text().strip()
        except OSError:
            return ""

    def write_api(self, url: str, pid: int, farm_file: Path) -> None:
        write_private(self.api_file, json.dumps({"url": url, "pid": pid, "farm_file": str(farm_file)}))

    def read_api(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.api_file.read_text())
        except (OSError, ValueError) as error:
            raise StateError(f"the controller's address is not in {self.api_file}: is the farm up? "
                             "(start it with `farmhand up`)") from error
        return data

    def remember_farm(self, farm_file: Path, name: str) -> None:
        """Record the farm file and name `up` started, so later commands (and `down` or
        `events` once the controller is gone) know which farm this folder holds."""
        write_private(self.farm_record, json.dumps({"farm_file": str(farm_file.resolve()), "name": name}))

    def remembered_farm(self) -> dict[str, str]:
        """``{"farm_file", "name"}`` of the farm last started here, or ``{}``."""
        try:
            data = json.loads(self.farm_record.read_text())
        except (OSError, ValueError):
            return {}
        return {key: str(data[key]) for key in ("farm_file", "name") if key in data}

    def farm_name(self) -> str:
        """The farm's name for messages: the remembered one, else the folder's."""
        return self.remembered_farm().get("name") or self.path.parent.name

    def controller_pid(self) -> int | None:
        """The pid of the controller that holds this farm's lock, or None when none runs.

        The kernel's lock is the truth (a pid in a file may be stale or reused); the pid
        itself is read from api.json, or from the lock file while the API is not up yet."""
        if not self.lock_file.exists():
            return None
        try:
            with open(self.lock_file) as probe:
                import fcntl

                try:
                    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    return None  # nobody holds it (closing the file releases our probe)
                holder = probe.read().strip()
        except OSError:
            return None
        with contextlib.suppress(StateError, ValueError):
            return int(self.read_api()["pid"])
        return int(holder) if holder.isdigit() else 0

    def lock(self) -> IO[str]:
        """Hold the controller lock for as long as the returned file stays open."""
        import fcntl

        lock_file = os.fdopen(open_private(self.lock_file, os.O_RDWR | os.O_CREAT), "r+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            holder = lock_file.read().strip() or "?"
            lock_file.close()
            raise StateError(f"another controller (pid {holder}) already runs this farm ({self.path}); "
                             "use `farmhand status`, or `farmhand down` first") from error
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        return lock_file

    def remove_api(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.api_file.unlink()
