"""Run one command on many hosts at once: at most ``fanout`` in flight, each host's answer
handed on as soon as it is in (so a slow host never holds back the others' output), every
failure to reach a host turned into a result rather than an exception.

A host is anything with the drivers' ``exec(command, timeout)``: the controller's drivers
(their connections already open) or the ones ``fleet.direct`` makes. Their ``exec`` kills
the command's whole process group at ``timeout`` and answers status 124.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from farmhand.drivers.base import ExecResult
from farmhand.errors import DriverError
from farmhand.fleet.gather import TIMED_OUT, UNREACHABLE, HostResult

DEFAULT_FANOUT = 64
DEFAULT_COMMAND_TIMEOUT = 3600.0
"""A command's time when none is asked: long, but never forever (a hung host is killed)."""


class Executor(Protocol):
    async def exec(self, command: str, timeout: float) -> ExecResult: ...


OnResult = Callable[[HostResult], Awaitable[None] | None]


def _timed_out(result: ExecResult) -> bool:
    return result.exit_code == TIMED_OUT and result.stderr.startswith(b"timed out after")


async def run_one(host: str, executor: Executor, command: str, timeout: float) -> HostResult:
    started = time.monotonic()
    try:
        answer = await executor.exec(command, timeout)
    except DriverError as error:
        reason = str(error).removeprefix(f"host {host}: ")
        return HostResult(host, UNREACHABLE, error=reason, seconds=time.monotonic() - started)
    elapsed = time.monotonic() - started
    if _timed_out(answer):
        return HostResult(host, TIMED_OUT, answer.stdout, timed_out=True, seconds=elapsed)
    return HostResult(host, answer.exit_code, answer.stdout + answer.stderr, seconds=elapsed)


async def run_all(executors: Mapping[str, Executor], command: str, *, timeout: float = DEFAULT_COMMAND_TIMEOUT,
                  fanout: int = DEFAULT_FANOUT, on_result: OnResult | None = None) -> list[HostResult]:
    """``command`` on every host of ``executors``; results in the hosts' order."""
    if fanout < 1:
        raise ValueError("fanout must be 1 or more")
    slots = asyncio.Semaphore(fanout)
    results: dict[str, HostResult] = {}

    async def one(host: str, executor: Executor) -> None:
        async with slots:
            result = await run_one(host, executor, command, timeout)
        results[host] = result
        if on_result is not None:
            maybe = on_result(result)
            if maybe is not None:
                await maybe

    async with asyncio.TaskGroup() as group:
        for host, executor in executors.items():
            group.create_task(one(host, executor))
    return [results[host] for host in executors]
