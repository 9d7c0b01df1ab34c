"""A client that loops requests to a URL and writes one JSON line per request to a file:
``{"start": t0, "end": t1, "ok": bool, "detail": "..."}``. Run inside a test host's network
namespace (``ip netns exec NS python pair_client.py URL OUT``) so it reaches a virtual
address the way a client on that network does. One request at a time, a new connection
each (as a client arriving after a takeover would), a short pause between them; it stops on
SIGTERM. Only the standard library."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import time
from urllib.parse import urlparse

TIMEOUT = 1.0
PAUSE = 0.02


def main(url: str, out: str) -> int:
    target = urlparse(url)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a", buffering=1) as log:
        while running:
            start = time.time()
            try:
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=TIMEOUT)
                connection.request("GET", target.path or "/")
                response = connection.getresponse()
                body = response.read().decode(errors="replace").strip()
                connection.close()
                ok, detail = response.status == 200, f"{response.status} {body}"
            except (OSError, http.client.HTTPException) as error:
                ok, detail = False, f"{type(error).__name__}: {error}"
            log.write(json.dumps({"start": start, "end": time.time(), "ok": ok, "detail": detail}) + "\n")
            time.sleep(PAUSE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
