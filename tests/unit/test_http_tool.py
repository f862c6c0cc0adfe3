"""http.request against a real HTTP server on 127.0.0.1, called both ways a worker calls it: on a
step thread (`request`) and awaited on an event loop (`request_async`)."""

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import ToolContext, ToolLimits, ToolRegistry, call_tool, compile_pipeline, run_pipeline_async
from engine.outbound import OutboundPolicy
from engine.tools.http import close_async_clients, close_clients
from store.errors import ToolError

REGISTRY = ToolRegistry.load()
TOOL = REGISTRY["http.request"]
# The step as a worker's event loop runs it; its input comes from params, checked at run time.
ONE_CALL = compile_pipeline(
    {"pipeline": [{"id": "call", "uses": "http.request", "with": "${params.args}"}]}, REGISTRY
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_loop: asyncio.AbstractEventLoop | None = None  # set while a test runs the asynchronous way


@pytest.fixture(autouse=True, params=["step thread", "event loop"])
def way(request):
    """Every test runs twice: through call_tool (the blocking tool), and as a one-step pipeline awaited
    on an event loop (the asynchronous tool), on one loop per test so its connections are reused."""
    global _loop
    if request.param == "event loop":
        _loop = asyncio.new_event_loop()
    yield request.param
    if _loop is not None:
        _loop.run_until_complete(close_async_clients())
        _loop.close()
        _loop = None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests)

    def do_GET(self):
        if self.path.startswith("/json"):
            self._reply(200, json.dumps({"path": self.path}).encode(), [("Content-Type", "application/json")])
        elif self.path == "/text":
            self._reply(200, b"plain", [("Content-Type", "text/plain; charset=utf-8")])
        elif self.path == "/busy":
            self._reply(429, b"slow down", [("Retry-After", "7")])
        elif self.path == "/broken":
            self._reply(502, b"bad gateway")
        elif self.path == "/missing":
            self._reply(404, b"no such thing")
        elif self.path == "/big":
            self._reply(200, b"x" * 5000)
        elif self.path == "/slow":
            time.sleep(1.0)
            self._reply(200, b"late")
        elif self.path == "/drip":  # each byte well within timeout_s, the whole response not
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                time.sleep(0.1)
                self.wfile.write(b"x")
                self.wfile.flush()
        elif self.path == "/latin-1":  # a header value that is not UTF-8 (send_header writes Latin-1)
            self._reply(200, b"ok", [("X-Name", "caf\u00e9")])
        elif self.path == "/loop":
            self._reply(302, b"", [("Location", "/loop")])
        elif self.path == "/many-headers":  # within httpx's 100 KB: one long value, then 300 short ones
            self._reply(200, b"ok", [("X-Long", "v" * 20_000)] + [(f"X-{i}", "1") for i in range(300)])
        elif self.path == "/not-gzip":
            self._reply(200, b"not gzip at all", [("Content-Encoding", "gzip")])

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self._reply(201, json.dumps({"got": body}).encode(), [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    close_clients()  # the pooled connection to it, else open (and its handler thread waiting) until exit


def call(args, timeout_s=5.0, max_bytes=10_000_000, allow="127.0.0.1"):
    limits = ToolLimits(http_max_response_bytes=max_bytes, outbound=OutboundPolicy.parse(allow))
    if _loop is None:
        return call_tool(TOOL, args, ToolContext.standalone(NOW, timeout_s, limits))
    run = run_pipeline_async(
        ONE_CALL, {"params": {"args": args}}, now=NOW, timeout_s=timeout_s, limits=limits
    )
    result = _loop.run_until_complete(run)
    if result.state != "succeeded":
        e = result.error
        raise ToolError(e["message"], code=e["code"], details=e.get("details"), retryable=e["retryable"])
    return result.steps[0]["output"]


def test_a_json_response_is_parsed(base_url):
    out = call({"url": f"{base_url}/json", "query": {"a": 1}})
    assert out["status"] == 200
    assert out["json"] == {"path": "/json?a=1"}


def test_query_values_of_every_allowed_type_are_spelled_alike(base_url):
    out = call({"url": f"{base_url}/json", "query": {"n": 2, "x": 1.5, "yes": True, "no": False, "s": "a b"}})
    assert out["json"] == {"path": "/json?n=2&x=1.5&yes=true&no=false&s=a+b"}


def test_a_query_in_the_url_is_kept_and_query_values_are_added_to_it(base_url):
    assert call({"url": f"{base_url}/json?a=1&b=x"})["json"] == {"path": "/json?a=1&b=x"}
    assert call({"url": f"{base_url}/json?a=1", "query": {"c": 3}})["json"] == {"path": "/json?a=1&c=3"}


def test_the_path_is_sent_as_written_and_only_what_must_be_escaped_is(base_url):
    assert call({"url": f"{base_url}/json/a%2Fb%7Ec"})["json"] == {"path": "/json/a%2Fb%7Ec"}
    assert call({"url": f"{base_url}/json/café"})["json"] == {"path": "/json/caf%C3%A9"}


def test_long_or_many_response_headers_are_read_alike(base_url):
    out = call({"url": f"{base_url}/many-headers"})
    assert out["status"] == 200 and len(out["headers"]["x-long"]) == 20_000 and out["headers"]["x-299"] == "1"


def test_a_json_body_is_sent(base_url):
    out = call({"url": f"{base_url}/echo", "method": "POST", "json": {"k": [1, 2]}})
    assert (out["status"], out["json"]) == (201, {"got": {"k": [1, 2]}})


def test_text_responses_come_back_as_text(base_url):
    assert call({"url": f"{base_url}/text"})["text"] == "plain"


def test_429_asks_to_retry_after_the_servers_delay(base_url):
    with pytest.raises(ToolError) as info:
        call({"url": f"{base_url}/busy"})
    assert info.value.code == "RETRY_LATER"
    assert info.value.details["delay_s"] == 7


def test_5xx_is_retryable_and_4xx_is_not(base_url):
    with pytest.raises(ToolError) as broken:
        call({"url": f"{base_url}/broken"})
    assert broken.value.retryable and broken.value.code == "HTTP_5XX"
    with pytest.raises(ToolError) as missing:
        call({"url": f"{base_url}/missing"})
    assert not missing.value.retryable and missing.value.code == "HTTP_4XX"


def test_fail_on_status_false_returns_the_status(base_url):
    assert call({"url": f"{base_url}/missing", "fail_on_status": False})["status"] == 404


def test_responses_above_the_size_cap_are_refused(base_url):
    with pytest.raises(ToolError) as info:
        call({"url": f"{base_url}/big"}, max_bytes=1000)
    assert info.value.code == "RESPONSE_TOO_LARGE"
    assert call({"url": f"{base_url}/big", "max_bytes": 6000})["bytes"] == 5000


def test_a_slow_server_times_out(base_url):
    started = time.monotonic()
    with pytest.raises(ToolError) as info:
        call({"url": f"{base_url}/slow", "timeout_s": 0.2})
    assert info.value.code in ("HTTP_TIMEOUT", "STEP_TIMEOUT")
    assert time.monotonic() - started < 0.9


def test_timeout_s_bounds_the_whole_response_not_each_read(base_url):
    with pytest.raises(ToolError) as info:
        call({"url": f"{base_url}/drip", "timeout_s": 0.5})
    assert info.value.code == "HTTP_TIMEOUT"


def test_response_headers_that_are_not_utf8_read_alike(base_url):
    assert call({"url": f"{base_url}/latin-1"})["headers"]["x-name"] == "caf\u00e9"


@pytest.mark.parametrize("path", ["/loop", "/not-gzip"])
def test_a_redirect_loop_or_an_undecodable_body_is_a_failure_of_the_call_not_a_crash(base_url, path):
    with pytest.raises(ToolError) as info:
        call({"url": f"{base_url}{path}", "follow_redirects": True})
    assert info.value.code == "HTTP_UNREACHABLE" and info.value.retryable


@pytest.mark.parametrize(
    "headers", [{"Bad Name": "x"}, {"X-A": "a\r\nX-Injected: 1"}, {"X-A": "caf\u00e9"}, {"X-A": "\u0000"}]
)
def test_headers_that_cannot_be_sent_as_given_are_bad_input(counted, headers):
    port, _ = counted
    with pytest.raises(ToolError) as info:
        call({"url": f"http://127.0.0.1:{port}/text", "headers": headers})
    assert info.value.code == "INPUT_INVALID" and not info.value.retryable
    assert _Counting.hits == []


def test_a_host_that_is_not_a_valid_name_is_an_invalid_url():
    with pytest.raises(ToolError) as info:
        call({"url": "http://xn--127-0.0.0.1/"})
    assert info.value.code == "HTTP_INVALID_URL" and not info.value.retryable


def test_a_refused_connection_is_retryable():
    with pytest.raises(ToolError) as info:
        call({"url": "http://127.0.0.1:9/"})
    assert info.value.retryable


def test_bad_input_is_refused_before_any_request():
    with pytest.raises(ToolError) as info:
        call({"url": "ftp://example.org/x"})
    assert info.value.code == "INPUT_INVALID"
    with pytest.raises(ToolError):
        call({"url": "http://127.0.0.1/", "json": {}, "body": "both"})


# -- the outbound policy, end to end through the tool ------------------------------------------------


class _Counting(Handler):
    hits: list[str] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        if self.path == "/hop":
            self._reply(302, b"", [("Location", self.headers["X-Next"])])
        else:
            super().do_GET()


@pytest.fixture
def counted():
    """A server on 127.0.0.1 and one on ::1 standing in for what an attacker wants to reach."""
    import socket

    class V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    _Counting.hits = []
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Counting), V6(("::1", 0), _Counting)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers[0].server_address[1], servers[1].server_address[1]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "LocalHost",
        "0.0.0.0",
        "0",
        "2130706433",
        "0x7f000001",
        "127.1",
        "[::ffff:127.0.0.1]",
    ],
)
def test_every_spelling_of_loopback_is_refused_and_nothing_reaches_the_target(counted, host):
    port, _ = counted
    with pytest.raises(ToolError) as raised:
        call({"url": f"http://{host}:{port}/text"}, allow="")
    assert raised.value.code == "OUTBOUND_REFUSED" and raised.value.retryable is False
    assert "ORDO_OUTBOUND_ALLOW" in raised.value.message
    assert _Counting.hits == []


def test_ipv6_loopback_and_octal_spellings_are_refused_too(counted):
    _, port6 = counted
    with pytest.raises(ToolError) as v6:
        call({"url": f"http://[::1]:{port6}/text"}, allow="")
    assert v6.value.code == "OUTBOUND_REFUSED"
    with pytest.raises(ToolError) as octal:  # httpx refuses the spelling itself
        call({"url": f"http://0177.0.0.1:{port6}/text"}, allow="")
    assert octal.value.retryable is False
    assert _Counting.hits == []


def test_a_redirect_to_a_refused_address_is_not_followed(counted):
    port, port6 = counted
    with pytest.raises(ToolError) as raised:
        call(
            {
                "url": f"http://127.0.0.1:{port}/hop",
                "follow_redirects": True,
                "headers": {"X-Next": f"http://[::1]:{port6}/text"},
            },
            allow=f"127.0.0.1:{port}",
        )
    assert raised.value.code == "OUTBOUND_REFUSED"
    assert _Counting.hits == ["/hop"]


def test_the_recorded_url_carries_no_credentials(counted):
    port, _ = counted
    out = call({"url": f"http://planner:hunter2@127.0.0.1:{port}/text"})
    assert out["url"] == f"http://127.0.0.1:{port}/text" and "hunter2" not in json.dumps(out)
    with pytest.raises(ToolError) as raised:
        call({"url": f"http://planner:hunter2@127.0.0.1:{port}/missing"})
    assert "hunter2" not in raised.value.message


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (connections stay open); says which client port and which cookies it saw."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        seen = {"port": self.client_address[1], "cookie": self.headers.get("Cookie")}
        body = json.dumps(seen).encode()
        self.send_response(200)
        if self.path == "/set-cookie":
            self.send_header("Set-Cookie", "session=tenant-a-secret; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def keepalive_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    close_clients()  # the pooled connection to it, else open (and its handler thread waiting) until exit


def test_runs_reuse_open_connections(keepalive_url):
    """Two requests to one server, one after the other, travel on one kept-alive connection."""
    first = call({"url": f"{keepalive_url}/a"})
    second = call({"url": f"{keepalive_url}/b"})

    assert first["json"]["port"] == second["json"]["port"]


def test_a_cookie_one_run_received_is_never_sent_by_another(keepalive_url):
    """The shared client keeps no cookies: what a server set for one run does not travel with the next."""
    call({"url": f"{keepalive_url}/set-cookie"})
    later = call({"url": f"{keepalive_url}/who"})

    assert later["json"]["cookie"] is None
