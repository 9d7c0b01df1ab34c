"""Read a Spark standalone master's status (its ``/json/`` page, with the slash) and judge how
many workers it needs. Shared by spark_wanted.py and spark_decommission.py."""

from __future__ import annotations

import json
import math
import urllib.request
from typing import Any


def master_status(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """The master's status: aliveworkers, cores, coresused, workers[], activeapps[]..."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        status: dict[str, Any] = json.load(answer)
    return status


def wanted_workers(status: dict[str, Any]) -> int:
    """Workers the master needs: none without applications; while applications run and every
    core offered is taken (an application takes all the cores it can get unless it sets
    spark.cores.max), one more than it has, plus one per application still waiting."""
    alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
    apps = status.get("activeapps", [])
    if not apps:
        return 0
    waiting = sum(1 for app in apps if app.get("state") == "WAITING")
    cores, used = int(status.get("cores", 0)), int(status.get("coresused", 0))
    per_worker = max(1, math.ceil(cores / len(alive))) if alive else 1
    busy = math.ceil(used / per_worker)
    return busy + (1 if used >= cores else 0) + waiting
