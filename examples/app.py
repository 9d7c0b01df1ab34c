"""The demo node: a tiny HTTP app (standard library only) that answers with its node id.

    python3 examples/app.py --port 8001 --node web-1

GET /        -> "hello from web-1\n"
GET /health  -> 200 "ok" (503 after `touch <workdir>/sick-<node>`: lets a demo make it ill)
GET /work?ms=N -> burns N ms of CPU, for load and autoscaling demos
GET /crash   -> the process exits with code 3 (to watch the farm heal it)
It stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def make_handler(node: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small keep-alive answers must not wait 40 ms

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlparse(self.path)
            if url.path == "/health":
                sick = os.path.exists(f"sick-{node}")
                self.reply(503 if sick else 200, "sick\n" if sick else "ok\n")
            elif url.path == "/work":
                milliseconds = float(parse_qs(url.query).get("ms", ["10"])[0])
                end = time.process_time() + milliseconds / 1000
                while time.process_time() < end:
                    pass
                self.reply(200, f"worked {milliseconds:g}ms on {node}\n")
            elif url.path == "/crash":
                self.reply(200, "crashing\n")
                self.wfile.flush()
                os._exit(3)
            else:
                self.reply(200, f"hello from {node}\n")

        def reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Node", node)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node", default=os.environ.get("FARMHAND_NODE", "app"))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.node))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (server.server_close(), sys.exit(0)))
    print(f"{args.node} listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
