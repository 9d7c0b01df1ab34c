"""A steady client loop for load-balancer tests: a few threads sending requests, bounded in
count and time, recording every failure with its reason."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Traffic:
    url: str
    threads: int = 2
    keep_alive: bool = True
    max_seconds: float = 240.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Traffic:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)

    def count(self) -> int:
        with self._lock:
            return self.ok

    def wait_for_requests(self, more: int, timeout: float = 20.0) -> None:
        """Block until ``more`` further requests succeeded (proof that traffic flows)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"traffic stalled: {self.count()} ok, failures: {self.failures[-5:]}")
            time.sleep(0.02)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keep_alive else 0)
        headers = {} if self.keep_alive else {"Connection": "close"}
        started = time.monotonic()
        with httpx.Client(timeout=10, trust_env=False, limits=limits, headers=headers) as client:
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
                try:
                    response = client.get(self.url)
                    good = response.status_code == 200 and response.text.startswith("hello from")
                    reason = f"status {response.status_code}: {response.text[:80]!r}"
                except (httpx.HTTPError, OSError) as error:
                    good, reason = False, f"{type(error).__name__}: {error}"
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(reason)
