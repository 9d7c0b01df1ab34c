"""An HTTPS client that loops requests to a URL and writes one JSON line per request to a
file: ``{"start": t0, "end": t1, "ok": bool, "detail": "...", "cert": "<sha256 of the
server's certificate>"}``. Like pair_client.py, whose loop it runs (in a test host's
namespace, one request at a time, a new connection and so a new handshake each, stops on
SIGTERM), but it trusts only the CA file it is given and names the certificate each handshake
saw, so a test can tell which certificate the pair served when. Only the standard library."""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import sys
from typing import Any
from urllib.parse import urlparse

from pair_client import TIMEOUT, failed, get, loop  # beside this script: its folder is on sys.path


def main(url: str, ca_file: str, server_name: str, out: str) -> int:
    target = urlparse(url)
    context = ssl.create_default_context(cafile=ca_file)

    def attempt() -> dict[str, Any]:
        cert = ""
        try:
            raw = socket.create_connection((target.hostname, target.port), timeout=TIMEOUT)
            tls = context.wrap_socket(raw, server_hostname=server_name)
            cert = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
            connection = http.client.HTTPConnection(server_name, target.port, timeout=TIMEOUT)
            connection.sock = tls
            return {**get(connection, target.path), "cert": cert}
        except (OSError, http.client.HTTPException) as error:
            return {**failed(error), "cert": cert}

    loop(out, attempt)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
