"""What the controller needs from any data plane in front of a role (load balancer or gate).

Engines (the builtin proxy, HAProxy, the SMTP gate) run as their own processes; the classes
that implement ``DataPlane`` are the controller-side handles that start, adopt and steer them.
The controller always sends the *whole* wanted set of backends: engines compare it with what
they have, so a lost or repeated message cannot leave them in a wrong state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

BackendState = Literal["ready", "drain"]


@dataclass(frozen=True)
class Backend:
    """One node as a data plane sees it. ``name`` is the node id."""

    name: str
    host: str
    port: int
    weight: int = 1
    state: BackendState = "ready"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backend:
        return cls(
            name=str(data["name"]),
            host=str(data["host"]),
            port=int(data["port"]),
            weight=int(data.get("weight", 1)),
            state=data.get("state", "ready"),
        )


class DataPlane(Protocol):
    """Controller-side handle of one role's data plane."""

    async def ensure_running(self) -> bool:
        """Start the engine's processes, or adopt them when they already run (after a
        controller restart): never a second copy, never a dropped connection. True when it
        adopted a running engine, so the controller says "adopted" rather than "started"."""
        ...

    async def set_backends(self, backends: list[Backend]) -> None:
        """Make the engine serve exactly these backends. ``drain`` ones get no new requests
        or connections; ones left out are removed once they have nothing in flight."""
        ...

    async def active(self, name: str) -> int:
        """Requests (http) or connections (tcp) in flight to backend ``name`` now."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Counters per listener and backend, JSON-shaped (see the engine's docs)."""
        ...

    async def stop(self) -> None:
        """Stop the engine's processes (the farm is going down)."""
        ...
