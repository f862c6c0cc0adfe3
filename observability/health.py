"""The small HTTP server of a worker or scheduler process: `/metrics` (that process kind's registry),
`/health` (liveness) and `/health/ready` (readiness), for Prometheus and Kubernetes probes.

Each process serves on its own port: several processes of one kind on a host take one port each
(see ops/README.md, "Metrics"). The API serves the same paths itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from store.errors import ConfigError

__all__ = ["Check", "ProbeServer", "serve_probes"]

# A check answers (ok, details); details are JSON-serialisable and shown to whoever probes.
Check = Callable[[], tuple[bool, dict[str, Any]]]


def _always() -> tuple[bool, dict[str, Any]]:
    return True, {}


class ProbeServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        live: Check = _always,
        ready: Check = _always,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/health": lambda: _probe(live),
            "/health/ready": lambda: _probe(ready),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = (
                    route() if route is not None else (404, "text/plain", b"not found: /metrics, /health\n")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds are not news
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {e.strerror}; give each worker or scheduler process "
                "on a host its own port (--metrics-port or ORDO_METRICS_PORT)"
            ) from e
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> ProbeServer:
        threading.Thread(target=self.server.serve_forever, name="probe-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_probes(host: str, port: int, registry: CollectorRegistry, **checks: Check) -> ProbeServer:
    """Serve /metrics, /health and /health/ready on host:port from a background thread."""
    return ProbeServer(host, port, registry, **checks).start()


def _probe(check: Check) -> tuple[int, str, bytes]:
    try:
        ok, details = check()
    except Exception as e:  # a failing check is an answer, not a crash of the server
        ok, details = False, {"error": f"{type(e).__name__}: {e}"}
    body = json.dumps({"status": "ok" if ok else "failing", **details}).encode()
    return (200 if ok else 503), "application/json", body
