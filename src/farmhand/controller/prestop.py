"""The ``pre_stop`` hook of a role: what runs before a removed node gets its stop signal.

A command runs on the node's host (through its driver, like an exec health check); an HTTP
call goes to the node itself. Either is bounded by the hook's timeout and never raises: a hook
that fails or hangs is reported and the stop goes on, so a broken hook cannot keep a node
(its role's kill grace counts the hook's timeout on top of ``stop_grace``).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping

import httpx

from farmhand.drivers.base import Driver
from farmhand.errors import FarmhandError
from farmhand.spec.models import PreStopSpec


async def run_hook(hook: PreStopSpec, values: Mapping[str, object], driver: Driver, port: int | None,
                   workdir: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``hook`` for one node (``values`` fill its placeholders); what happened, in words.
    A command runs where the node does: in the role's ``workdir``, with its ``env``."""
    try:
        async with asyncio.timeout(hook.timeout):
            if hook.command is not None:
                command = hook.command.format(**values)
                where = f"cd {shlex.quote(workdir)} && " if workdir else ""
                result = await driver.exec(where + command, timeout=hook.timeout, env=env)
                if result.exit_code == 0:
                    return f"`{command}` done"
                tail = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
                return f"`{command}` exited {result.exit_code}" + (f": {tail[-1][:200]}" if tail else "")
            path = (hook.http or "/").format(**values)
            if port is None:
                return f"{hook.method} {path} skipped: the node has no port"
            host = f"[{driver.address}]" if ":" in driver.address else driver.address
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.request(hook.method, f"http://{host}:{port}{path}")
            return f"{hook.method} {path} answered {answer.status_code}"
    except TimeoutError:
        return f"no end within {hook.timeout:g}s; stopping it anyway"
    except (FarmhandError, httpx.HTTPError, OSError) as error:
        return f"failed ({error or type(error).__name__}); stopping it anyway"
