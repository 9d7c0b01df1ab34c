"""Importing the SSH session leaves ctypes as it was and asyncssh with its optional parts."""

from __future__ import annotations

import subprocess
import sys


def test_the_quick_library_lookup_lasts_only_for_the_import() -> None:
    probe = (
        "import ctypes.util; original = ctypes.util.find_library\n"
        "import farmhand.drivers.ssh_session, asyncssh\n"
        "assert ctypes.util.find_library is original\n"
        "assert asyncssh.crypto.pq.mlkem_available and hasattr(asyncssh.crypto, 'umac64')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
