"""A client that loops requests to a URL and writes one JSON line per request to a file:
``{"start": t0, "end": t1, "ok": bool, "detail": "..."}``. Run inside a test host's network
namespace (``ip netns exec NS python pair_client.py URL OUT``) so it reaches a virtual
address the way a client on that network does. One request at a time, a new connection
each (as a client arriving after a takeover would), a short pause between them; it stops on
SIGTERM. Only the standard library. pair_tls_client.py runs the same loop over HTTPS
(``loop``, ``get`` and ``failed`` are shared with it)."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

TIMEOUT = 1.0
PAUSE = 0.02


def get(connection: http.client.HTTPConnection, path: str) -> dict[str, Any]:
    """One GET of PATH on CONNECTION, then closed: whether it answered 200, and what it said."""
    connection.request("GET", path or "/")
    response = connection.getresponse()
    body = response.read().decode(errors="replace").strip()
    connection.close()
    return {"ok": response.status == 200, "detail": f"{response.status} {body}"}


def failed(error: Exception) -> dict[str, Any]:
    return {"ok": False, "detail": f"{type(error).__name__}: {error}"}


def loop(out: str, attempt: Callable[[], dict[str, Any]]) -> None:
    """Call ATTEMPT (one request, its record's fields) until SIGTERM, a line in OUT each."""
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a", buffering=1) as log:
        while running:
            start = time.time()
            fields = attempt()
            log.write(json.dumps({"start": start, "end": time.time(), **fields}) + "\n")
            time.sleep(PAUSE)


def main(url: str, out: str) -> int:
    target = urlparse(url)

    def attempt() -> dict[str, Any]:
        try:
            return get(http.client.HTTPConnection(target.hostname, target.port, timeout=TIMEOUT), target.path)
        except (OSError, http.client.HTTPException) as error:
            return failed(error)

    loop(out, attempt)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
