"""Find the line of a key path in TOML text.

tomllib gives values but no positions, so this follows table headers and ``key =`` lines
closely enough to point a user at the right line. It returns the line of the deepest part of
the path it can find (a key inside an inline table points at the line that holds the table).
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p.strip("\"'") for p in parts]


def locate_key(text: str, path: tuple[str, ...]) -> int | None:
    """1-based line of the deepest prefix of ``path`` written in ``text``, or None."""
    best_line: int | None = None
    best_depth = 0
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_dotted(header.group(1))
            full = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            full = table + _split_dotted(key.group(1))
        depth = _common_prefix(full, path)
        if depth == len(full) and depth > best_depth or header and depth == len(path) and best_depth < depth:
            best_line, best_depth = number, depth
    return best_line


def _common_prefix(a: list[str], b: tuple[str, ...]) -> int:
    depth = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        depth += 1
    return depth
