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
        self._followers: set[asyncio.Queue[Event]] = set()

    def add(self, kind: str, message: str, role: str | None = None, node: str | None = None) -> Event:
        event = self._store.add_event(Event(self._clock.now(), kind, message, role, node))
        for queue in self._followers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)
        return event

    def recent(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return self._store.events(after, limit)

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """Stored events after ``after``, then new ones as they come, without gaps."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)
        self._followers.add(queue)
        try:
            last = after
            for event in self._store.events(after, limit=10_000):
                last = event.seq or last
                yield event
            while True:
                event = await queue.get()
                if event.seq is not None and event.seq <= last:
                    continue
                last = event.seq or last
                yield event
        finally:
            self._followers.discard(queue)
