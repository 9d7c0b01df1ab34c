"""One call to an engine's own handle, made on a pair member's host:
``python -m farmhand.lb.member_call RUN_DIR`` reads ``{"op", "settings", ...}`` on stdin and
prints one answer line (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). Its
ops are the ``DataPlane`` calls plus the HTTPS ones (``set_tls``, ``set_challenges``).

Why: an engine whose handle speaks to it through local files and sockets (HAProxy: its
config, pidfile and runtime API) works on a member host unchanged when its handle runs
there. The handle holds nothing between calls that matters (HAProxy's adopts what runs by its
admin socket, and a drain left unfinished is finished by the next ``set_backends``), so a
process per call is enough; the builtin engine is steered directly through its control socket
instead (lb/placed.py), which is faster. The handle class comes from the engines registry,
as ``farmhand.lb.make_data_plane`` finds it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from farmhand.dataplane import Backend
from farmhand.errors import FarmhandError
from farmhand.lb.settings import EngineSettings, TlsSettings
from farmhand.registry import ENGINES, split_entry


async def call(run_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    settings = EngineSettings.from_json(request["settings"])
    module_name, class_name = split_entry(ENGINES[settings.engine])
    handle = getattr(importlib.import_module(module_name), class_name)(settings, run_dir)
    op = request["op"]
    if op == "ensure":
        return {"adopted": bool(await handle.ensure_running())}
    if op == "set_backends":
        await handle.set_backends([Backend.from_json(b) for b in request["backends"]])
        return {}
    if op == "active":
        return {"active": int(await handle.active(str(request["name"])))}
    if op == "stats":
        answer: dict[str, Any] = await handle.stats()
        return answer
    if op == "stop":
        await handle.stop()
        return {}
    if op == "set_tls":  # the certificate files on this host have new contents: load them
        await handle.set_tls(TlsSettings.from_json(request["tls"]))
        return {}
    if op == "set_challenges":  # ACME HTTP-01 answers, on whichever member holds the address
        await handle.set_challenges({str(k): str(v) for k, v in request["challenges"].items()})
        return {}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        answer = {"ok": True, **asyncio.run(call(run_dir, json.loads(sys.stdin.read())))}
    except (FarmhandError, OSError, ValueError, KeyError) as error:
        answer = {"ok": False, "error": str(error) or type(error).__name__}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
