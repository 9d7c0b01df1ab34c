"""``python -m farmhand.lb.engine RUN_DIR/engine.json``: the builtin engine's supervisor.

Only the command-line name lives here; the code is ``farmhand.lb.builtin.engine``. The name
stays as it always was because ``ps`` shows it to operators, and ``owner`` recognises a
builtin balancer by it when it names who holds a listening address (also one that an older
farmhand started). Importing this module loads nothing.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from farmhand.lb.builtin.engine import main

    sys.exit(main())
