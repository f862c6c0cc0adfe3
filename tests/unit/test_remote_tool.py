"""Catalog tools served by an HTTP endpoint (`"runs": {"kind": "http"}`), against a real server on
127.0.0.1, called both ways a worker calls them: blocking on a step thread, and awaited on an event
loop."""

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import ToolContext, ToolLimits, ToolRegistry, call_tool, compile_pipeline, run_pipeline_async
from engine.tools import remote
from store.errors import ToolError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Endpoint(BaseHTTPRequestHandler):
    """A tool service: /echo answers the input with what it saw; other paths misbehave on purpose."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the caller gave up (the timeout test)

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/echo":
            seen = {
                "input": data,
                "run_id": self.headers["X-Ordo-Run-Id"],
                "step": self.headers["X-Ordo-Step"],
                "token": self.headers.get("Authorization"),
                "cookie": self.headers.get("Cookie"),
                "port": self.client_address[1],
            }
            self._reply(
                200,
                json.dumps(seen).encode(),
                [("Content-Type", "application/json"), ("Set-Cookie", "s=tenant-a; Path=/")],
            )
        elif self.path == "/busy":
            self._reply(429, b"later", [("Retry-After", "7")])
        elif self.path == "/broken":
            self._reply(500, b"oops")
        elif self.path == "/moved":
            self._reply(302, b"", [("Location", "/echo")])
        elif self.path == "/text":
            self._reply(200, b"not json", [("Content-Type", "text/plain")])
        elif self.path == "/big":
            self._reply(200, b'"' + b"x" * 5000 + b'"', [("Content-Type", "application/json")])
        elif self.path == "/slow":
            time.sleep(1.0)
            self._reply(200, b"{}", [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def registry(base_url, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("catalog") / "tools.json"
    entries = [
        {
            "address": f"svc.{name}",
            "description": "A tool service endpoint.",
            "input_schema": {"type": "object"},
            "output_schema": {},
            "timeout_s": 5,
            "runs": {"kind": "http", "url": f"{base_url}/{name}", "headers": {"Authorization": "Bearer svc"}},
        }
        for name in ("echo", "busy", "broken", "moved", "text", "big", "slow")
    ]
    entries.append(
        {**entries[0], "address": "svc.nowhere", "runs": {"kind": "http", "url": "http://127.0.0.1:9/x"}}
    )
    catalog.write_text(json.dumps({"tools": entries}))
    return ToolRegistry.load([catalog])


_loop: asyncio.AbstractEventLoop | None = None


@pytest.fixture(autouse=True, params=["step thread", "event loop"])
def way(request):
    global _loop
    if request.param == "event loop":
        _loop = asyncio.new_event_loop()
    yield request.param
    if _loop is not None:
        _loop.run_until_complete(remote.close_async_clients())
        _loop.close()
        _loop = None


def call(registry, name, args=None, timeout_s=5.0, max_bytes=10_000_000):
    limits = ToolLimits(http_max_response_bytes=max_bytes)
    tool = registry[f"svc.{name}"]
    if _loop is None:
        ctx = ToolContext.standalone(NOW, timeout_s, limits)
        ctx.run, ctx.step_id = {"id": 42}, "ask"
        return call_tool(tool, args or {}, ctx)
    pipeline = compile_pipeline(
        {"pipeline": [{"id": "ask", "uses": tool.address, "with": "${params.args}"}]}, registry
    )
    context = {"params": {"args": args or {}}, "run": {"id": 42}}
    result = _loop.run_until_complete(
        run_pipeline_async(pipeline, context, now=NOW, timeout_s=timeout_s, limits=limits)
    )
    if result.state != "succeeded":
        e = result.error
        raise ToolError(e["message"], code=e["code"], details=e.get("details"), retryable=e["retryable"])
    return result.steps[0]["output"]


def test_the_input_is_posted_and_the_json_answer_is_the_output(registry):
    out = call(registry, "echo", {"order": 7})
    assert out["input"] == {"order": 7}
    assert (out["run_id"], out["step"], out["token"]) == ("42", "ask", "Bearer svc")


def test_calls_reuse_a_connection_and_carry_no_cookie_a_service_set(registry):
    first = call(registry, "echo")
    second = call(registry, "echo")
    assert first["port"] == second["port"]
    assert second["cookie"] is None


def test_what_an_answer_means(registry):
    with pytest.raises(ToolError) as busy:
        call(registry, "busy")
    assert busy.value.code == "RETRY_LATER" and busy.value.details["delay_s"] == 7
    with pytest.raises(ToolError) as broken:
        call(registry, "broken")
    assert broken.value.code == "HTTP_5XX" and broken.value.retryable
    with pytest.raises(ToolError) as moved:  # an endpoint's redirect is not followed
        call(registry, "moved")
    assert moved.value.code == "HTTP_REFUSED" and not moved.value.retryable
    with pytest.raises(ToolError) as text:
        call(registry, "text")
    assert text.value.code == "HTTP_NOT_JSON"


def test_an_answer_above_the_size_cap_is_refused(registry):
    with pytest.raises(ToolError) as big:
        call(registry, "big", max_bytes=1000)
    assert big.value.code == "RESPONSE_TOO_LARGE" and not big.value.retryable
    assert call(registry, "big", max_bytes=6000) == "x" * 5000


def test_an_unreachable_or_slow_endpoint_fails_the_call_for_a_retry(registry):
    with pytest.raises(ToolError) as nowhere:
        call(registry, "nowhere")
    assert nowhere.value.code == "HTTP_UNREACHABLE" and nowhere.value.retryable
    started = time.monotonic()
    with pytest.raises(ToolError) as slow:
        call(registry, "slow", timeout_s=0.2)
    assert slow.value.code in ("HTTP_TIMEOUT", "STEP_TIMEOUT") and slow.value.retryable
    assert time.monotonic() - started < 0.9


def test_every_endpoint_tool_can_be_awaited(registry):
    assert all(registry[a].afunc is not None for a in registry if a.startswith("svc."))
