"""Small field types shared by the spec's models.

Kept apart from ``models.py`` so that submodels in their own files (``gate.py``) can use them
without importing ``models`` back, which imports them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from farmhand.units import parse_duration


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a duration (use a string such as \"2s\")")
    if isinstance(value, (int, float)):
        raise ValueError(f'{value} is not a duration: write it with a unit, such as "{value}s"')
    return parse_duration(value)


def duration_text(seconds: float) -> str:
    """A duration string that ``parse_duration`` reads back exactly (to the microsecond).

    ``units.format_duration`` rounds for people ("1m30s"); this one is for JSON that is
    validated again elsewhere (a data-plane process reading its configuration).
    """
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    millis = f"{seconds * 1000:.3f}".rstrip("0").rstrip(".")
    return f"{millis}ms"


class Strict(BaseModel):
    """Base of every farm-file table: unknown keys are errors (``extra="forbid"``), because a
    misspelt key silently ignored is the costliest kind of typo in an operations tool; frozen,
    so a spec never changes once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(duration_text, return_type=str, when_used="json"),
]
"""Seconds, written in the file as "500ms", "2s", "5m", "1h"; JSON dumps give the string back."""
