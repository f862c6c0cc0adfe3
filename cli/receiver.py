"""A webhook receiver that checks what Ordo sends: every request is verified (Standard Webhooks v1:
signature, timestamp tolerance), de-duplicated on webhook-id, recorded as one JSON line, and answered
204 (401 when the signature does not verify). `GET /` shows what arrived. `ordo up --demo` runs one
so the loop is visible without another program; point a test endpoint at it to see your own.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from engine.webhook_signing import SignatureMismatch, secret_key, verify

__all__ = ["Receiver", "serve"]

_MAX_BODY = 1024 * 1024
_SHOWN = 50


@dataclass
class Receiver:
    """What arrived, and where it is recorded. Thread-safe: the server handles requests on threads."""

    secrets: list[str]
    record: Path | None = None
    on_request: Callable[[dict[str, Any]], None] = lambda entry: None
    clock: Callable[[], float] = time.time
    _seen: set[str] = field(default_factory=set)
    _last: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_SHOWN))
    _counts: dict[str, int] = field(default_factory=lambda: {"verified": 0, "duplicates": 0, "refused": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._keys = [secret_key(s) for s in self.secrets]

    def receive(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """The status to answer and the entry recorded for one request."""
        now = self.clock()
        entry: dict[str, Any] = {"received_at": now, "webhook_id": headers.get("webhook-id")}
        try:
            verify(self._keys, headers, body, now)
        except SignatureMismatch as e:
            entry.update(verified=False, error=str(e))
            status = 401
        else:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            if not isinstance(payload, dict):
                payload = {}
            entry.update(verified=True, type=payload.get("type"), timestamp=payload.get("timestamp"))
            entry["data"] = payload.get("data")
            status = 204
        with self._lock:
            if entry["verified"]:
                entry["duplicate"] = entry["webhook_id"] in self._seen
                self._seen.add(entry["webhook_id"])
                self._counts["duplicates" if entry["duplicate"] else "verified"] += 1
            else:
                self._counts["refused"] += 1
            self._last.appendleft(entry)
            if self.record is not None:
                with self.record.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.on_request(entry)
        return status, entry

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "last": list(self._last)}


def serve(receiver: Receiver, host: str, port: int, stop: threading.Event) -> None:
    """Serve until `stop` is set."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > _MAX_BODY:
                self._answer(413, {"error": f"body over {_MAX_BODY} bytes"})
                return
            body = self.rfile.read(length)
            status, entry = receiver.receive({k.lower(): v for k, v in self.headers.items()}, body)
            self._answer(status, None if status == 204 else {"error": entry.get("error")})

        def do_GET(self) -> None:
            self._answer(200, receiver.summary())

        def _answer(self, status: int, doc: Any) -> None:
            data = b"" if doc is None else json.dumps(doc, ensure_ascii=False).encode()
            self.send_response(status)
            if data:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # each request is reported once, by on_request

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
