"""When to renew a certificate and when to try again after a failed order (pure).

Renewal starts when a third of the certificate's lifetime is left, as Let's Encrypt
advises (30 days before the end of a 90-day certificate), so a farm has weeks of retries
before a certificate expires; the rule scales down to Pebble's short test certificates.
A failed order is retried after a delay that doubles from ``FIRST_RETRY`` up to
``MAX_RETRY``, so an ACME server's rate limits are not hammered.
"""

from __future__ import annotations

from dataclasses import dataclass

RENEW_LEFT = 1 / 3
"""Renew when this share of the lifetime is left."""
FIRST_RETRY = 30.0
MAX_RETRY = 6 * 3600.0


@dataclass(frozen=True)
class Validity:
    """A certificate's validity window, as Unix times."""

    not_before: float
    not_after: float


def renew_at(validity: Validity) -> float:
    """The moment from which a certificate is due for renewal."""
    lifetime = max(0.0, validity.not_after - validity.not_before)
    return validity.not_after - lifetime * RENEW_LEFT


def is_due(validity: Validity | None, now: float) -> bool:
    """Whether to order now: no certificate yet, or a third (or less) of its lifetime left."""
    return validity is None or now >= renew_at(validity)


def retry_delay(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed order in a row (1, 2, ...)."""
    if failures < 1:
        return 0.0
    return float(min(FIRST_RETRY * 2.0 ** (failures - 1), MAX_RETRY))


def next_attempt(validity: Validity | None, failures: int, last_failure: float | None, now: float) -> float:
    """When the next order should start (``now`` or later): after the backoff of the last
    failure, and not before the certificate is due."""
    due = now if validity is None else max(now, renew_at(validity))
    if failures and last_failure is not None:
        due = max(due, last_failure + retry_delay(failures))
    return due
