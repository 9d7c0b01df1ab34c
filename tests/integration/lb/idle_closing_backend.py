"""A standard-library backend (``http.server``) that closes keep-alive connections soon.

    python idle_closing_backend.py --port P --name NAME --idle SECONDS

HTTP/1.1 keep-alive like ``examples/app.py``, but a connection left idle for ``--idle``
seconds after a response is closed by the server, as gunicorn, Node and uvicorn do after
their keep-alive timeouts (a fresh connection's first request is waited for as long as it
takes, as those servers do: their header timeouts are seconds, not milliseconds). A proxy that pools backend connections then sometimes
sends a request on a connection the server is closing at that very moment: issue 10 #9.
It writes ``ready`` to stdout once it listens.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name: str, idle: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = idle

        def handle(self) -> None:
            # The first request may take as long as it needs (a server's keep-alive timeout
            # starts after a response); then each idle wait for the next one is ``idle``.
            self.connection.settimeout(None)
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection:
                self.connection.settimeout(idle)
                self.handle_one_request()

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

        def log_error(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--idle", type=float, default=0.01)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.name, args.idle))
    server.daemon_threads = True
    server.request_queue_size = 128
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
