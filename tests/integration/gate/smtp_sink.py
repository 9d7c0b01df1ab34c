"""A tiny SMTP server on stdin/stdout, the last link of the test chains (qmail-smtpd's place).

Every run leaves ``SINK_DIR/ran-<pid>``; every accepted message becomes ``SINK_DIR/mail-<pid>-<n>``.
So a test can tell both "the backend was never run" and "it received exactly these mails".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    folder = Path(os.environ["SINK_DIR"])
    (folder / f"ran-{os.getpid()}").write_text(os.environ.get("TCPREMOTEIP", "-"))
    out = sys.stdout.buffer
    read = sys.stdin.buffer.readline
    out.write(b"220 sink.test ESMTP ready\r\n")
    out.flush()
    count = 0
    while line := read():
        verb = line.strip().split(b" ", 1)[0].upper()
        if verb in (b"EHLO", b"HELO"):
            out.write(b"250 sink.test\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            out.write(b"250 ok\r\n")
        elif verb == b"DATA":
            out.write(b"354 go ahead\r\n")
            out.flush()
            body = []
            while (data := read()) and data.rstrip(b"\r\n") != b".":
                body.append(data)
            count += 1
            (folder / f"mail-{os.getpid()}-{count}").write_bytes(b"".join(body))
            out.write(b"250 accepted\r\n")
        elif verb == b"QUIT":
            out.write(b"221 bye\r\n")
            out.flush()
            return
        else:
            out.write(b"502 unknown\r\n")
        out.flush()


if __name__ == "__main__":
    main()
