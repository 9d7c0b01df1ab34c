"""Passive transitions: what was observed and needs taking in before the tick decides the
rest (the first of the reconciler's two phases, as in Ray's autoscaler).

- A process of a known node that the store has with another pid (or none) is **adopted**:
  the controller that started it died before writing, or this controller just started.
  Adoption comes first so the rest of the tick never starts a second copy.
- A process of this farm that no record places on that host is a **stray** (a host that
  came back with nodes placed elsewhere meanwhile): it gets its stop signal when first seen
  and is killed once it outlived ``STRAY_GRACE``.

Pure: the memory of when each stray was first seen comes in and goes out as a value.
"""

from __future__ import annotations

from collections.abc import Mapping

from farmhand.controller.decide.actions import Action, AdoptNode, Note, SignalStray
from farmhand.controller.decide.observed import World

STRAY_GRACE = 10.0


def take_in(world: World, first_seen: Mapping[str, float]) -> tuple[list[Action], dict[str, float]]:
    """Actions for adoptions and strays, and the strays' first-seen times to keep."""
    actions: list[Action] = [AdoptNode(p.node_id, p.host, p.pid, p.started_at) for p in world.adoptable]
    memory: dict[str, float] = {}
    for stray in world.strays:
        key = f"{stray.host}/{stray.node_id}"
        since = first_seen.get(key, world.now)
        memory[key] = since
        if since == world.now:
            actions.append(Note("node.orphan", f"{stray.node_id}: process {stray.pid} on {stray.host} is not wanted; "
                                "stopping it", node=stray.node_id))
            actions.append(SignalStray(stray.host, stray.node_id, stray.pid, stray.started_at, "TERM"))
        elif world.now - since > STRAY_GRACE:
            actions.append(SignalStray(stray.host, stray.node_id, stray.pid, stray.started_at, "KILL"))
    return actions, memory
