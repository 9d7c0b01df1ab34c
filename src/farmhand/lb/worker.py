"""``python -m farmhand.lb.worker --listen-fd N --link-fd M engine.json``: a builtin worker.

Only the command-line name lives here; the code is ``farmhand.lb.builtin.worker``. The name
stays as it always was because ``ps`` shows it to operators, and ``owner`` recognises a
builtin balancer by it. Importing this module loads nothing.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from farmhand.lb.builtin.worker import main

    sys.exit(main())
