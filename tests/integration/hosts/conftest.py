"""Fixtures for tests against test hosts: network namespaces with their own sshd.

The fixtures live in tests/testhosts.py (a plugin module, also behind scripts/testhosts);
they are imported here because ``pytest_plugins`` is only allowed in the top conftest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testhosts import module_host, testhosts, three_hosts  # noqa: E402,F401
