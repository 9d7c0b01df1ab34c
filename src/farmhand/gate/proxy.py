"""The gate process: ``python -m farmhand.gate.proxy --config PATH``.

Started (detached, in its own session) by ``GateDataPlane`` and left running when the
controller stops or dies (DESIGN.md rule 2). It listens for SMTP clients, holds them in their
delay, relays the polite ones; answers the control channel on ``gate-ROLE.sock`` in the
state folder; writes ``gate-ROLE.pid`` once it listens, which with a ping is how a restarted
controller finds and adopts it. SIGTERM (or the ``stop`` op) closes held clients and gives
relays the listener's ``drain_timeout`` to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from pathlib import Path

from farmhand import control_channel
from farmhand.control_channel import runtime_dir
from farmhand.errors import FarmhandError
from farmhand.gate.config import GateConfig, listen_address
from farmhand.gate.hold import ClientSide
from farmhand.gate.server import Gate
from farmhand.spec.gate import split_address

log = logging.getLogger("farmhand.gate")
BACKLOG = 4096


def paths(state_dir: Path, role: str) -> tuple[Path, Path]:
    """(control socket, pidfile) of a role's gate (in a short folder when the state folder is
    too deep for a Unix socket path)."""
    folder = runtime_dir(state_dir, f"gate/{role}")
    return folder / "control.sock", folder / "gate.pid"


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one: each held client is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


async def run(config: GateConfig) -> None:
    """Serve until SIGTERM/SIGINT or the ``stop`` op."""
    loop = asyncio.get_running_loop()
    gate = Gate(config)
    for warning in config.options.warnings():
        log.warning("%s", warning)
    host, port = listen_address(config.listen)
    server = await loop.create_server(lambda: ClientSide(gate), host, port, backlog=BACKLOG)
    gate.listening = server.sockets[0].getsockname()[:2]
    socket_path, pid_path = paths(Path(config.state_dir), config.role)
    control = await control_channel.serve(socket_path, gate.handle)
    metrics = None
    if config.options.metrics_listen:
        from farmhand.gate.metrics import serve_metrics

        metrics_host, metrics_port = split_address(config.options.metrics_listen, default_port=None)
        metrics = await serve_metrics(gate, metrics_host, metrics_port)
        gate.metrics_listening = metrics.sockets[0].getsockname()[:2]
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gate.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    _write_pidfile(pid_path)
    log.info("gate %s listening on %s (pid %d)", config.role, gate.listening, os.getpid())
    try:
        await gate.stopping.wait()
    finally:
        log.info("gate %s stopping", config.role)
        server.close()
        control.close()
        if metrics is not None:
            metrics.close()
        await gate.shut_down()
        _remove_if_ours(pid_path)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def _write_pidfile(path: Path) -> None:
    temporary = path.with_suffix(".pid.tmp")
    temporary.write_text(f"{os.getpid()}\n")
    temporary.replace(path)


def _remove_if_ours(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m farmhand.gate.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="the JSON written by GateDataPlane")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = GateConfig.read(args.config)
        raise_open_files_limit()
        try:
            import uvloop
        except ImportError:  # uvloop is a dependency; plain asyncio still works without it
            asyncio.run(run(config))
        else:
            uvloop.run(run(config))
    except FarmhandError as error:
        log.error("%s", error)
        return 1
    except OSError as error:
        log.error("gate cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
