"""A local HTTP server that answers every GET after a fixed delay: the far end of an I/O-bound step.

    python benchmarks/_slow_server.py PORT DELAY_S

asyncio on uvloop, one small Protocol per keep-alive connection, GET only (no request body is read):
a request costs it a few tens of microseconds, so what a benchmark measures is the clients it serves,
not this server. Every path answers `{"ok": true}` after DELAY_S, except `/count`, which answers at
once with how many delayed requests were answered so far (a benchmark checks that every run made its
call exactly once). Prints READY when listening; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

_BODY = b'{"ok": true}'
_DELAYED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)
_NOT_GET = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Counter:
    answered = 0


class _SlowHttp(asyncio.Protocol):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.buffer = rest
            request_line = head.split(b"\r\n", 1)[0]
            method, _, target = request_line.partition(b" ")
            if method != b"GET":
                self._write(_NOT_GET)
                assert self.transport is not None
                self.transport.close()
                return
            if target.startswith(b"/count"):
                body = b'{"answered": %d}' % _Counter.answered
                self._write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            else:
                # Responses on one connection leave in request order: every delay is the same.
                asyncio.get_running_loop().call_later(self.delay_s, self._answer)

    def _answer(self) -> None:
        if self._write(_DELAYED):
            _Counter.answered += 1

    def _write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True


async def _serve(port: int, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SlowHttp(delay_s), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("READY", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    import uvloop  # uvicorn[standard] brings it

    uvloop.run(_serve(int(sys.argv[1]), float(sys.argv[2])))


if __name__ == "__main__":
    main()
