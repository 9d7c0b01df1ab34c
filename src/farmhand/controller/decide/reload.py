"""What a reload changes, said in words: one phrase per change, for the event and the answer
of `farmhand reload`. Pure: two specs in, phrases out."""

from __future__ import annotations

from farmhand.spec.models import FarmSpec


def describe_changes(old: FarmSpec, new: FarmSpec) -> list[str]:
    """One phrase per change a reload makes, for the event and the command's answer."""
    changes = []
    for name in sorted(new.roles.keys() - old.roles.keys()):
        changes.append(f"role {name} added")
    for name in sorted(old.roles.keys() - new.roles.keys()):
        changes.append(f"role {name} removed")
    for name in sorted(new.roles.keys() & old.roles.keys()):
        before, after = old.roles[name], new.roles[name]
        if before.bounds != after.bounds:
            changes.append(f"role {name} count {before.count or (before.min, before.max)} -> "
                           f"{after.count or (after.min, after.max)}")
        if before.fingerprint() != after.fingerprint():
            changes.append(f"role {name} command/env changed: rolling replacement")
        elif before != after and before.bounds == after.bounds:
            changes.append(f"role {name} settings changed")
    for name in sorted(new.hosts.keys() ^ old.hosts.keys()):
        changes.append(f"host {name} {'added' if name in new.hosts else 'removed'}")
    return changes
