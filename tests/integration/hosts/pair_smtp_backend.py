"""A tiny SMTP server for the gate-pair test's nodes: ``python3 pair_smtp_backend.py --port P
--host H --node NAME``. Greets with its node's name, accepts every mail and prints each
mail's Subject line on stdout (so ``farmhand logs NODE`` shows which node got it). Only the
standard library, so any Python on a test host runs it."""

from __future__ import annotations

import argparse
import asyncio


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: str) -> None:
    writer.write(f"220 {node} ESMTP backend\r\n".encode())
    try:
        while line := await reader.readline():
            verb = line.strip().split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(f"250 {node}\r\n".encode())
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                subject = ""
                while (data := await reader.readline()) and data.rstrip(b"\r\n") != b".":
                    if data.lower().startswith(b"subject:"):
                        subject = data.decode(errors="replace").strip()
                print(f"mail on {node}: {subject}", flush=True)
                writer.write(f"250 accepted by {node}\r\n".encode())
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"502 no\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(host: str, port: int, node: str) -> None:
    server = await asyncio.start_server(lambda r, w: serve_client(r, w, node), host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--node", default="node")
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port, args.node))
