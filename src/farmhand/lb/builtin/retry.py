"""When a failed attempt may be tried again on another backend, and when it ejects one.

Pure decisions, kept apart from the protocols so the rules of issue 3 read (and are tested)
as a table:

- refused, connect timeout: nothing reached the backend, so any request (and, in tcp mode,
  any connection) goes to another backend; the backend is ejected at once;
- reset, or closed without a response byte: the request may have been processed, so only an
  idempotent request whose bytes we still hold is retried; a reset ejects the backend;
- response timeout, or a response already started: never retried (the client may already
  hold part of an answer, or the request is slow rather than lost).

Every backend is tried at most once per request (the balancer is given the ones tried) and
at most ``1 + RETRIES`` attempts are made.
"""

from __future__ import annotations

import enum

from farmhand.lb.settings import RETRIES


class Failure(enum.Enum):
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect-timeout"
    RESET = "reset"
    CLOSED_EARLY = "closed-without-response"
    RESPONSE_TIMEOUT = "response-timeout"
    BAD_RESPONSE = "bad-response"


IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

_NOTHING_SENT = frozenset({Failure.REFUSED, Failure.CONNECT_TIMEOUT})
_MAYBE_PROCESSED = frozenset({Failure.RESET, Failure.CLOSED_EARLY})
_EJECTS = frozenset({Failure.REFUSED, Failure.CONNECT_TIMEOUT, Failure.RESET})


def ejects(failure: Failure) -> bool:
    """Passive health: the first connect failure or reset takes a backend out at once."""
    return failure in _EJECTS


def may_retry(
    failure: Failure,
    *,
    idempotent: bool,
    replayable: bool,
    response_started: bool,
    attempts: int,
) -> bool:
    """Whether the request (or tcp connection) may go to another backend.

    ``attempts`` counts attempts made so far, including the failed one; ``replayable`` is
    whether the proxy still holds every byte of the request it sent.
    """
    if response_started or attempts > RETRIES:
        return False
    if failure in _NOTHING_SENT:
        return True
    if failure in _MAYBE_PROCESSED:
        return idempotent and replayable
    return False


def failure_of(error: BaseException | None, *, connected: bool) -> Failure:
    """Classify an OS error from a backend socket."""
    if not connected:
        return Failure.CONNECT_TIMEOUT if isinstance(error, TimeoutError) else Failure.REFUSED
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return Failure.RESET
    return Failure.CLOSED_EARLY
