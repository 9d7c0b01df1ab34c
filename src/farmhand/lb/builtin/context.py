"""What the proxy protocols of one worker process share: settings, backends, counters, clock.

Timeouts are enforced by one sweep every ``TICK`` seconds over the open connections, not by
a timer per request (FIELD-NOTES: per-request timers cost more than the proxying itself), so
connections carry a tick stamp that the sweep compares with ``Context.tick``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from farmhand.lb.builtin import messages
from farmhand.lb.builtin.table import BackendTable, Counters, Slot
from farmhand.lb.settings import EngineSettings

TICK = 0.25
"""Seconds between sweeps; timeouts are precise to one tick."""
POOL_IDLE = 2.0
"""Idle keep-alive connections to backends close after this long, well under the usual
backend keep-alive timeouts (uvicorn 5 s, nginx 75 s), so we rarely reuse one being closed."""
RATE_WINDOW = 10
"""Seconds over which requests/s is measured."""


def ticks(seconds: float) -> int:
    return max(1, math.ceil(seconds / TICK))


class Context:
    """One worker's shared state. Protocols read attributes directly (hot path)."""

    def __init__(self, settings: EngineSettings, on_eject: Callable[[str], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.settings = settings
        self.tick = 0
        self.listener = Counters()
        self.clients: set[Any] = set()
        self.waiting: deque[Any] = deque()
        self.table = BackendTable(settings.balance, on_usable=self.serve_waiting)
        self.on_eject = on_eject
        self.rate_samples: deque[int] = deque(maxlen=RATE_WINDOW + 1)
        self.connecting: set[asyncio.Task[None]] = set()
        """Connect tasks in progress (held here: the loop keeps only weak references)."""
        self.challenges: dict[str, str] = {}
        """ACME HTTP-01 tokens -> key authorizations, answered on the plain listener."""
        self.front: Callable[[bytes], bytes | None] | None = None
        """What the plain listener answers itself (redirects, challenges); None: proxy all."""
        self.hsts: bytes | None = None
        """The Strict-Transport-Security line added to HTTPS answers, if any."""
        self.configure(settings)

    def start_connect(self, connect: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(connect)
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    def configure(self, settings: EngineSettings) -> None:
        """Apply settings that can change without a restart (timeouts, limits, balance)."""
        self.settings = settings
        self.connect_timeout = settings.connect_timeout
        self.connect_ticks = ticks(settings.connect_timeout)
        self.client_ticks = ticks(settings.client_timeout)
        self.head_ticks = ticks(settings.http_request_timeout)
        self.server_ticks = ticks(settings.server_timeout)
        self.pool_ticks = ticks(POOL_IDLE)
        self.max_request = settings.max_request_bytes
        self.max_response = settings.max_response_bytes
        self.table.set_balance(settings.balance)
        tls = settings.tls
        self.hsts = None if tls is None or tls.hsts_seconds is None else messages.hsts_line(tls.hsts_seconds)
        self.set_challenges(self.challenges)

    def set_challenges(self, challenges: dict[str, str]) -> None:
        """Serve these ACME answers; the plain listener looks at requests only while it has
        any to answer or redirects (so plain-only balancers pay nothing)."""
        self.challenges = dict(challenges)
        tls = self.settings.tls
        redirect = tls.listen_port if tls is not None and tls.redirect_http else None
        if redirect is None and not self.challenges:
            self.front = None
            return
        held = self.challenges

        def front(head: bytes) -> bytes | None:
            return messages.plain_answer(head, held, redirect)

        self.front = front

    def eject(self, slot: Slot) -> None:
        """Passive health: take ``slot`` out here at once and tell the supervisor."""
        if self.table.set_ejected(slot.name, True) is not None:
            self.on_eject(slot.name)

    def wait_for_backend(self, client: Any) -> None:
        client.waiting_since = self.tick
        self.waiting.append(client)

    def serve_waiting(self) -> None:
        """Backends became usable: dispatch the requests that were waiting, in order."""
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, deque()
        for client in waiting:
            if client.waiting_since is not None:
                client.waiting_since = None
                client.dispatch()

    def sample_rate(self) -> None:
        table = self.table
        self.rate_samples.append(
            table.retired.requests
            + sum(s.requests for s in table.slots.values())
            + sum(s.requests for s in table.retiring)
        )

    def requests_per_s(self) -> float:
        samples = self.rate_samples
        if len(samples) < 2:
            return 0.0
        return (samples[-1] - samples[0]) / (len(samples) - 1)

    @staticmethod
    def now() -> float:
        return time.monotonic()
