"""An HTTPS client that loops requests to a URL and writes one JSON line per request to a
file: ``{"start": t0, "end": t1, "ok": bool, "detail": "...", "cert": "<sha256 of the
server's certificate>"}``. Like pair_client.py (run in a test host's namespace, one request at
a time, a new connection and so a new handshake each, stops on SIGTERM), but it trusts only
the CA file it is given and names the certificate each handshake saw, so a test can tell
which certificate the pair served when. Only the standard library."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import ssl
import sys
import time
from urllib.parse import urlparse

TIMEOUT = 1.0
PAUSE = 0.02


def main(url: str, ca_file: str, server_name: str, out: str) -> int:
    target = urlparse(url)
    context = ssl.create_default_context(cafile=ca_file)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a", buffering=1) as log:
        while running:
            start = time.time()
            cert = ""
            try:
                raw = socket.create_connection((target.hostname, target.port), timeout=TIMEOUT)
                tls = context.wrap_socket(raw, server_hostname=server_name)
                cert = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
                connection = http.client.HTTPConnection(server_name, target.port, timeout=TIMEOUT)
                connection.sock = tls
                connection.request("GET", target.path or "/")
                response = connection.getresponse()
                body = response.read().decode(errors="replace").strip()
                connection.close()
                ok, detail = response.status == 200, f"{response.status} {body}"
            except (OSError, http.client.HTTPException) as error:
                ok, detail = False, f"{type(error).__name__}: {error}"
            log.write(json.dumps({"start": start, "end": time.time(), "ok": ok, "detail": detail, "cert": cert}) + "\n")
            time.sleep(PAUSE)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
