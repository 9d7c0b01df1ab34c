"""The release-reporting node for deploy tests (standard library only), run from its release:

GET /        -> "hello from NODE release X" (X: release.txt in the working directory)
GET /health  -> 503 when the release holds ``unhealthy`` or ``unhealthy-SLOT`` (web-2.3 has
                slot 2), else 200: a release can be made to fail its check on chosen slots.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    slot = args.node.rpartition("-")[2].partition(".")[0]
    with open("release.txt") as file:  # read once: the release this process started in
        release = file.read().strip()
    sick = os.path.exists("unhealthy") or os.path.exists(f"unhealthy-{slot}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/health":
                self.reply(503 if sick else 200, "sick\n" if sick else "ok\n")
            else:
                self.reply(200, f"hello from {args.node} release {release}\n")

        def reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (server.server_close(), sys.exit(0)))
    server.serve_forever()


if __name__ == "__main__":
    main()
