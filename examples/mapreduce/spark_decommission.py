"""Decommission one Spark standalone worker before farmhand stops it: send SIGPWR to the
process that listens on the worker's port (a worker decommissions on SIGPWR when
spark.decommission.enabled is set), then wait until the master lists it as decommissioned
with no cores in use, so its running tasks finish and no new ones land there.

    python3 spark_decommission.py http://127.0.0.1:8080/json/ 127.0.0.1 41234
"""

from __future__ import annotations

import os
import signal
import sys
import time

from spark_status import master_status


def listening_inodes(port: int) -> set[str]:
    """The socket inodes of TCP listeners on ``port`` (from /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as listing:
                lines = listing.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def pid_listening(port: int) -> int | None:
    """The process that listens on ``port`` on this host, found through its open sockets."""
    inodes = listening_inodes(port)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: spark_decommission.py MASTER_JSON_URL WORKER_HOST WORKER_PORT", file=sys.stderr)
        return 2
    url, host, port = argv[0], argv[1], int(argv[2])
    pid = pid_listening(port)
    if pid is None:
        print(f"no process listens on port {port}: nothing to decommission")
        return 0
    os.kill(pid, signal.SIGPWR)
    while True:  # farmhand's pre_stop timeout bounds the wait
        workers = [w for w in master_status(url)["workers"] if w["host"] == host and w["port"] == port]
        if not workers or all(w["state"] != "ALIVE" and w["coresused"] == 0 for w in workers):
            print(f"worker {host}:{port} (pid {pid}) decommissioned")
            return 0
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
