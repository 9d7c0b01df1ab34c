"""How one check result moves a node's health, HAProxy-style.

A node is ``unknown`` until it has passed ``rise`` checks in a row (then ``healthy``) or
failed ``fall`` in a row (then ``unhealthy``); it flips only after ``rise`` or ``fall``
results the other way, so one slow answer does not restart a node. Failures inside the
start grace are not counted at all: a slow starter is not a failing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from farmhand.records import Health


@dataclass(frozen=True)
class CheckState:
    status: Health = Health.UNKNOWN
    passes: int = 0
    failures: int = 0
    detail: str = ""
    checks: int = 0


def after_check(state: CheckState, ok: bool, detail: str, *, in_grace: bool, rise: int, fall: int) -> CheckState:
    """The health after one more check result."""
    if ok:
        passes = state.passes + 1
        status = Health.HEALTHY if passes >= rise else state.status
        return CheckState(status, passes, 0, "", state.checks + 1)
    if in_grace and state.status != Health.HEALTHY:
        return CheckState(state.status, 0, 0, detail, state.checks + 1)
    failures = state.failures + 1
    status = Health.UNHEALTHY if failures >= fall else state.status
    return CheckState(status, 0, failures, detail, state.checks + 1)
