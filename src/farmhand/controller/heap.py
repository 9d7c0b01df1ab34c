"""Keeps the garbage collector's full passes out of a big farm's ticks.

At 10,000 nodes the controller holds a few hundred thousand long-lived objects (records,
health states, store caches). CPython's full collection walks every one of them: 60 to 330 ms
measured here, landing in whatever tick is running, which set the p95 of a tick during a
crash storm (bench/fake_scale.py). Those objects live as long as their nodes, so walking them
again and again finds nothing.

Once a farm of at least ``MIN_NODES`` is at rest (every node running), the controller
collects once and moves what survived into the collector's permanent generation
(``gc.freeze``); later collections walk only what was made since. It does that again when
the farm's size has moved by ``REFREEZE_CHANGE`` of what it was, or ``REFREEZE_EVERY``
seconds later, unfreezing first, so cyclic garbage among frozen objects waits at most that
long to be collected (refcounting frees the rest as usual). Small farms keep Python's defaults:
their collections take a few milliseconds.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)
MIN_NODES = 1000
REFREEZE_CHANGE = 0.25
REFREEZE_EVERY = 3600.0


def should_freeze(nodes: int, frozen_nodes: int | None, frozen_at: float | None, now: float) -> bool:
    """Whether a farm of ``nodes`` at rest should collect and freeze now, given the size and
    time of the last freeze (None: never)."""
    if nodes < MIN_NODES:
        return False
    if frozen_nodes is None or frozen_at is None:
        return True
    return abs(nodes - frozen_nodes) > REFREEZE_CHANGE * frozen_nodes or now - frozen_at >= REFREEZE_EVERY


class HeapKeeper:
    """Freezes the controller's long-lived objects when the farm is big and at rest."""

    def __init__(self) -> None:
        self.frozen_nodes: int | None = None
        self.frozen_at: float | None = None

    def __repr__(self) -> str:
        return f"<HeapKeeper [frozen at {self.frozen_nodes} nodes]>"

    def at_rest(self, nodes: int, now: float) -> bool:
        """Called after a tick in which every node runs; True when it froze."""
        if not should_freeze(nodes, self.frozen_nodes, self.frozen_at, now):
            return False
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.frozen_nodes, self.frozen_at = nodes, now
        log.info("heap frozen at %d nodes: %d objects in %.0f ms", nodes, gc.get_freeze_count(),
                 (time.perf_counter() - started) * 1000)
        return True
