"""Retry and ejection rules of issue 3, as a table."""

from __future__ import annotations

import pytest

from farmhand.lb.builtin.retry import Failure, ejects, failure_of, may_retry
from farmhand.lb.settings import RETRIES

F = Failure


@pytest.mark.parametrize(
    ("failure", "idempotent", "replayable", "started", "expected"),
    [
        (F.REFUSED, False, False, False, True),  # nothing was sent: even a POST moves on
        (F.CONNECT_TIMEOUT, False, True, False, True),
        (F.RESET, True, True, False, True),
        (F.CLOSED_EARLY, True, True, False, True),
        (F.RESET, False, True, False, False),  # a POST may have been processed
        (F.CLOSED_EARLY, False, True, False, False),
        (F.CLOSED_EARLY, True, False, False, False),  # body no longer held
        (F.RESPONSE_TIMEOUT, True, True, False, False),
        (F.BAD_RESPONSE, True, True, False, False),
        (F.CLOSED_EARLY, True, True, True, False),  # part of an answer already went out
    ],
)
def test_may_retry(failure: Failure, idempotent: bool, replayable: bool, started: bool, expected: bool) -> None:
    assert may_retry(failure, idempotent=idempotent, replayable=replayable, response_started=started, attempts=1) is expected


def test_attempts_are_bounded() -> None:
    assert may_retry(F.REFUSED, idempotent=True, replayable=True, response_started=False, attempts=RETRIES)
    assert not may_retry(F.REFUSED, idempotent=True, replayable=True, response_started=False, attempts=RETRIES + 1)


def test_connect_failures_and_resets_eject_other_failures_do_not() -> None:
    assert {f for f in Failure if ejects(f)} == {F.REFUSED, F.CONNECT_TIMEOUT, F.RESET}


def test_failure_of_classifies_os_errors() -> None:
    assert failure_of(ConnectionRefusedError(), connected=False) is F.REFUSED
    assert failure_of(TimeoutError(), connected=False) is F.CONNECT_TIMEOUT
    assert failure_of(ConnectionResetError(), connected=True) is F.RESET
    assert failure_of(None, connected=True) is F.CLOSED_EARLY
