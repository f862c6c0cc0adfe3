"""A real HTTP webhook receiver on 127.0.0.1 for tests: it verifies every request with the reference
Standard Webhooks library (PyPI `standardwebhooks`), records what it got, and answers what the test
scripts (500, 429 with Retry-After, a redirect, a slow answer, ...)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() at receipt
    verified_with: list[int]  # indexes of the secrets whose library verify accepted the request
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets = list(secrets or [])
        self.received: list[Received] = []
        self.script: list[Answer] = []  # answers for the next requests, in order; then `default`
        self.default = Answer()
        self.url = ""
        self._lock = threading.Lock()

    def answer(self, *answers: Answer | int) -> None:
        with self._lock:
            self.script.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def verified(self) -> list[Received]:
        """Requests the library accepted with at least one of the secrets."""
        with self._lock:
            return [r for r in self.received if r.verified_with]

    def accepted(self) -> list[Received]:
        """Verified requests that were answered 2xx: what the receiver actually took in."""
        return [r for r in self.verified() if 200 <= r.answered < 300]

    def wait_for(self, predicate: Callable[[Receiver], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver: timed out after {timeout} s; got {len(self.received)} requests"
                )
            time.sleep(0.01)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length", "0"))
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        verified = []
        for i, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except (WebhookVerificationError, ValueError):
                pass
        with self._lock:
            answer = self.script.pop(0) if self.script else self.default
            self.received.append(Received(headers, body, time.time(), verified, answer.status))
        if answer.delay_s:
            time.sleep(answer.delay_s)
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)


@contextmanager
def receiving(secrets: list[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[Receiver]:
    """A receiver serving on `port` of `host` (0: a free one) until the block ends."""
    receiver = Receiver(secrets)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            receiver._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://{host}:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
