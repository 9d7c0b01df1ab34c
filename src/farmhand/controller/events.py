"""The event log: every change is stored with a time and a reason, and pushed to followers
(`farmhand events -f`, the dashboard) as it happens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from farmhand.clock import Clock
from farmhand.records import Event
from farmhand.store.base import Store


class EventLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._followers: set[asyncio.Queue[Event | None]] = set()
        self._closed = False

    def add(self, kind: str, message: str, role: str | None = None, node: str | None = None) -> Event:
        event = self._store.add_event(Event(self._clock.now(), kind, message, role, node))
        for queue in self._followers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)
        return event

    def close(self) -> None:
        """The controller stops: every follower's stream ends (after the events it has)."""
        self._closed = True
        for queue in self._followers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    def recent(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return self._store.events(after, limit)

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """Stored events after ``after``, then new ones as they come, without gaps."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=10_000)
        self._followers.add(queue)
        try:
            last = after
            for event in self._store.events(after, limit=10_000):
                last = event.seq or last
                yield event
            while not self._closed:
                new = await queue.get()
                if new is None:
                    return
                if new.seq is not None and new.seq <= last:
                    continue
                last = new.seq or last
                yield new
        finally:
            self._followers.discard(queue)
