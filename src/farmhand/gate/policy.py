"""The greet-delay policy: how long each class waits, and what a refused client is told.

Pure. Both faces of the gate use it: ``smtp-delay`` builds it from its command line, the proxy
from the farm file's ``gate_options`` (``farmhand.spec.gate``, whose defaults a unit test keeps
equal to these: this module must not import pydantic, which costs ``smtp-delay`` ~40 ms per
connection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from farmhand.errors import GateError
from farmhand.gate.rdns import DynamicRules, RdnsClass

MAX_DELAY = 300.0
WARN_DELAY = 30.0
DEFAULT_DELAYS: dict[RdnsClass, float] = {
    "static": 2.0,
    "dynamic": 8.0,
    "mismatch": 12.0,
    "no_ptr": 20.0,
}
DEFAULT_REJECT_TEXT = "Too early: wait for the greeting before you talk (early talker)"
DEFAULT_DNS_TIMEOUT = 5.0

Watch = Literal["quiet", "talker", "hangup"]
"""What a client did during its delay: nothing, sent bytes, or closed the connection."""
Verdict = Literal["pass", "talker", "hangup", "skip"]
"""pass: run/relay to the real server; talker: refuse; hangup: nothing to do; skip: no
delay at all (RELAYCLIENT, RBLSMTPD already decided, allowlist, pass cache)."""


class GateUsageError(GateError):
    """A delay, regex or option the gate cannot use; the message says what to write instead."""


def check_delay(seconds: float, what: str) -> float:
    """``seconds`` if usable as a delay, else ``GateUsageError`` telling the allowed range."""
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise GateUsageError(f"{what}: {seconds} is not a delay (give seconds, 0 or more, such as 2 or 0.5)")
    if seconds >= MAX_DELAY:
        raise GateUsageError(
            f"{what}: {seconds:g}s is refused: clients may give up before {MAX_DELAY:g}s "
            f"(keep delays under {WARN_DELAY:g}s)"
        )
    return seconds


@dataclass(frozen=True)
class DelayPolicy:
    """Delays per class, the dynamic-name rules, and the refusal."""

    delays: dict[RdnsClass, float] = field(default_factory=lambda: dict(DEFAULT_DELAYS))
    rules: DynamicRules = field(default_factory=DynamicRules)
    permanent: bool = False
    reject_text: str = DEFAULT_REJECT_TEXT

    def __post_init__(self) -> None:
        for klass, seconds in self.delays.items():
            check_delay(seconds, f"the {klass} delay")
        if not self.reject_text or any(c in self.reject_text for c in "\r\n"):
            raise GateUsageError("the refusal text must be one non-empty line")

    def delay_for(self, klass: RdnsClass) -> float:
        return self.delays.get(klass, DEFAULT_DELAYS[klass])

    def warnings(self) -> list[str]:
        """Allowed but unwise delays, for stderr or the log."""
        return [
            f"the {klass} delay of {seconds:g}s is over {WARN_DELAY:g}s: some clients give up before that"
            for klass, seconds in self.delays.items()
            if seconds > WARN_DELAY
        ]

    def rblsmtpd_value(self) -> str:
        """RBLSMTPD for an early talker: rblsmtpd answers 451 with the text, 553 with a
        leading "-"."""
        return ("-" if self.permanent else "") + self.reject_text

    def reply(self) -> bytes:
        """What the gate itself answers an early talker (standalone or proxy)."""
        code = "553 5.7.1" if self.permanent else "451 4.7.1"
        return f"{code} {self.reject_text}\r\n".encode()


def verdict_for(watch: Watch) -> Verdict:
    """The verdict on a client that was delayed and did ``watch``."""
    verdicts: dict[Watch, Verdict] = {"quiet": "pass", "talker": "talker", "hangup": "hangup"}
    return verdicts[watch]


def remaining_delay(delay: float, elapsed: float) -> float:
    """How much longer to hold a client after ``elapsed`` seconds already spent (the DNS
    lookup counts toward the delay)."""
    return max(0.0, delay - elapsed)
