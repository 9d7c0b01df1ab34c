"""Every error farmhand raises on purpose, in one tree.

    FarmhandError                  anything farmhand reports to a user (exit status 1)
    ├── SpecError                  the farm file is wrong; carries every problem at once (exit 2)
    ├── StateError                 .farmhand/ is missing, locked or unreadable
    ├── DriverError                a host refused or failed an operation (names the host)
    │   ├── HostUnreachable        the host does not answer
    │   └── PortInUse              a fixed port is taken on that host
    ├── RequestError               a request names something that is not there or not allowed
    ├── ApiError                   the controller answered with an error, or not at all
    ├── LbError                    a load balancer could not be started or reconfigured
    └── GateError                  the SMTP gate was given options it cannot use

Errors are raised where a fact is known and carry the facts a user needs to fix the
problem (which file, key, host, node), so the CLI only has to print ``str(error)``.
"""

from __future__ import annotations

from dataclasses import dataclass


class FarmhandError(Exception):
    """Base of every deliberate farmhand error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong in a farm file: where it is and what is wrong."""

    file: str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SpecError(FarmhandError):
    """The farm file is invalid; all problems are gathered so the user fixes them in one go."""

    exit_code = 2

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StateError(FarmhandError):
    """The farm's state folder (.farmhand/) cannot be used as asked."""


class DriverError(FarmhandError):
    """A host could not do what was asked; the message names the host."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"host {host}: {message}")


class HostUnreachable(DriverError):
    """The host does not answer (network, sshd down, wrong address)."""


class PortInUse(DriverError):
    """A fixed port is already bound on the host by something farmhand did not start."""

    def __init__(self, host: str, port: int) -> None:
        self.port = port
        super().__init__(host, f"port {port} is already in use by another process")


class RequestError(FarmhandError):
    """A user's request cannot be done as asked; ``field`` names the part that is wrong and
    ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        self.field = field
        self.status = status
        super().__init__(message)


class ApiError(FarmhandError):
    """The controller's API refused a call or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class LbError(FarmhandError):
    """A load balancer could not be started, reached or reconfigured."""


class GateError(FarmhandError):
    """The SMTP gate was configured with something it cannot honour."""
