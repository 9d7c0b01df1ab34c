"""Pure decisions: functions of (spec, records, observations, now) that return actions.

Nothing here does I/O or reads a clock; the import-linter contract in pyproject.toml keeps it
that way. That is what lets the tests walk through hours of failures in microseconds.
"""
