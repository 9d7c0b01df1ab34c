"""The pair member's watcher (farmhand.lb.pair_watch): "0" in the track file while the
balancer's control socket answers, "1" the moment its process is killed, "0" again when a
new one answers; only one watcher per balancer. Real processes: a stand-in balancer that
serves the control channel, killed with -9, and the watcher itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BALANCER = """
import asyncio, sys
from farmhand import control_channel

async def main():
    async def answer(request):
        return {}
    await control_channel.serve(sys.argv[1], answer)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def says(path: Path, wanted: str, what: str) -> None:
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_text().strip() == wanted):
        assert time.monotonic() < deadline, f"the track file never said {wanted} ({what})"
        time.sleep(0.02)


def test_the_track_file_follows_the_balancer(tmp_path: Path) -> None:
    control, track = tmp_path / "control.sock", tmp_path / "alive"
    watch = [sys.executable, "-m", "farmhand.lb.pair_watch", str(control), str(track)]
    processes: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    try:
        start(watch)
        says(track, "1", "no balancer yet")
        balancer = start([sys.executable, "-c", BALANCER, str(control)])
        says(track, "0", "the balancer answers")
        assert subprocess.run(watch, timeout=30, check=False).returncode == 0, "a second watcher leaves at once"
        balancer.kill()
        says(track, "1", "the balancer was killed")
        start([sys.executable, "-c", BALANCER, str(control)])
        says(track, "0", "a new balancer answers")
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
