"""``[groups]``: named sets of hosts for the fleet verbs (``farmhand exec @db -- uptime``).

A group is a list of node-set patterns (``db = ["h1", "h2"]``, ``web = ["web[01-20]"]``,
``edge = ["@web!web03"]``); it is named with ``@`` on the command line, where roles may be
named the same way (the hosts that run the role). Members are kept as written: they are
resolved against the hosts when a target is expanded (``farmhand.fleet.targets``), so a
group may name hosts a file does not list yet and ``check`` says nothing about them.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

GROUP_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,30}$"
MEMBER_PATTERN = re.compile(r"^[A-Za-z0-9@_.:/\-\[\],!&^]+$")
"""What a node-set pattern is made of: names, ranges in brackets, set operators, ``@``."""


def _members(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("a group needs at least one member (a host name or a pattern such as \"web[1-3]\")")
    for member in value:
        if not MEMBER_PATTERN.fullmatch(member):
            raise ValueError(f"{member!r} is not a host name or node-set pattern (letters, digits, "
                             "'-', '.', ranges such as web[1-3] or h[1-9/2], and , ! & ^ @)")
    return value


GroupMembers = Annotated[list[str], AfterValidator(_members)]
GroupTable = dict[Annotated[str, Field(pattern=GROUP_NAME_PATTERN)], GroupMembers]
"""The ``[groups]`` table: group name -> its members."""
