"""Retire one Dask worker through its scheduler: the scheduler first copies the results only
that worker holds to the others, then closes it. The workers' ``pre_stop`` in dask.toml runs
this before farmhand sends the stop signal, so scaling in loses no finished task.

    python3 dask_retire.py tcp://127.0.0.1:8786 workers-3
"""

from __future__ import annotations

import sys

from distributed import Client


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: dask_retire.py SCHEDULER_ADDRESS WORKER_NAME", file=sys.stderr)
        return 2
    scheduler, name = argv
    with Client(scheduler, timeout=10) as client:
        retired = client.retire_workers(names=[name], close_workers=True)
    # a worker the scheduler no longer knows (it had died) has nothing to hand over
    print(f"retired {name}: {sorted(retired) or 'not connected'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
