"""The farm's state folder, ``.farmhand/`` beside the farm file.

It holds everything a later command needs without flags: the database, node logs, the
API's address and token, and the controller's lock (an ``flock`` the kernel drops when the
controller dies, however it dies, so a ``kill -9`` never leaves a stale lock behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from farmhand.errors import StateError

STATE_DIR_NAME = ".farmhand"


@dataclass(frozen=True)
class StateDir:
    path: Path

    @classmethod
    def beside(cls, farm_file: Path) -> StateDir:
        return cls(farm_file.resolve().parent / STATE_DIR_NAME)

    @classmethod
    def find(cls, start: Path | None = None) -> StateDir:
        """The nearest ``.farmhand/`` in this folder or above it."""
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / STATE_DIR_NAME).is_dir():
                return cls(folder / STATE_DIR_NAME)
        raise StateError(f"no {STATE_DIR_NAME}/ in {here} or above: run this in the farm's folder "
                         "(where `farmhand up` ran), or pass --farm FILE")

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
    def farm_id(self) -> str:
        """Tags this farm's processes, so two farms on one machine never adopt each other's."""
        return hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        os.chmod(self.path, 0o700)

    def token(self) -> str:
        """The API token, made once and kept (0600) so restarts keep the same one."""
        if self.token_file.exists():
            return self.token_file.read_text().strip()
        token = secrets.token_urlsafe(24)
        descriptor = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
        return token

    def write_api(self, url: str, pid: int, farm_file: Path) -> None:
        temporary = self.api_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"url": url, "pid": pid, "farm_file": str(farm_file)}))
        os.replace(temporary, self.api_file)

    def read_api(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.api_file.read_text())
        except (OSError, ValueError) as error:
            raise StateError(f"the controller's address is not in {self.api_file}: is the farm up? "
                             "(start it with `farmhand up`)") from error
        return data

    def lock(self) -> IO[str]:
        """Hold the controller lock for as long as the returned file stays open."""
        lock_file = open(self.path / "controller.lock", "a+")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock_file.seek(0)
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
