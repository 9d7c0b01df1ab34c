"""The store interface; SQLite implements it now, PostgreSQL (for controller HA) later."""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager

from farmhand.records import Event, NodeRecord, RoleState


class Store(abc.ABC):
    version: int
    """Grows with every change to nodes or roles (so readers can skip work when it has not)."""
    @abc.abstractmethod
    def nodes(self) -> list[NodeRecord]:
        """Every node the farm has asked for and not yet removed."""

    @abc.abstractmethod
    def node(self, node_id: str) -> NodeRecord | None: ...

    @abc.abstractmethod
    def put_node(self, node: NodeRecord) -> None:
        """Insert or replace one node's record."""

    @abc.abstractmethod
    def delete_node(self, node_id: str) -> None: ...

    @abc.abstractmethod
    def roles(self) -> dict[str, RoleState]: ...

    @abc.abstractmethod
    def put_role(self, role: RoleState) -> None: ...

    @abc.abstractmethod
    def add_event(self, event: Event) -> Event:
        """Append an event; returns it with its sequence number."""

    @abc.abstractmethod
    def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with a sequence number above ``after``, oldest first (at most ``limit``,
        the newest ones when there are more)."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set_meta(self, key: str, value: str | None) -> None: ...

    @abc.abstractmethod
    def batch(self) -> AbstractContextManager[None]:
        """Group the writes made inside into one transaction (a tick's actions)."""

    def changed_since(self, version: int) -> list[tuple[str, str]] | None:
        """``(node id, host)`` of every node written or deleted after ``version`` (repeats
        possible), or None when the store cannot say (the reader then rereads every node)."""
        return None

    @abc.abstractmethod
    def close(self) -> None: ...
