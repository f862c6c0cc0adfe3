"""A lean webhook receiver for benchmarks, run as its own process: asyncio, HTTP/1.1 keep-alive, every
request verified (Standard Webhooks v1, engine.webhook_signing) and answered 204, and the receipt time
of each webhook-id written to a JSON file when it is stopped (SIGTERM).

    python benchmarks/_webhook_receiver.py PORT SECRET OUT.json
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.webhook_signing import SignatureMismatch, secret_key, verify

_OK = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
_REFUSED = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"


async def main(port: int, secret: str, out: Path) -> None:
    keys = [secret_key(secret)]
    received: dict[str, float] = {}
    refused = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                now = time.time()
                try:
                    received.setdefault(verify(keys, headers, body, now), now)
                    writer.write(_OK)
                except SignatureMismatch:
                    refused += 1
                    writer.write(_REFUSED)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()
    out.write_text(json.dumps({"received": received, "refused": refused}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
