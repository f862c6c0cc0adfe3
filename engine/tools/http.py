"""http.request: one HTTP call with httpx, bounded in time and in response size, to where the
outbound policy allows (engine/outbound.py: public addresses, plus ORDO_OUTBOUND_ALLOW), checked
after DNS resolution and again at every redirect.

Failures steer retries: a timeout, a refused connection or a 5xx may succeed later (retryable);
429/503 honour Retry-After; other 4xx are permanent unless `fail_on_status` is false, in which case
the status is returned as output for a later step to inspect. A URL the policy refuses fails
permanently (OUTBOUND_REFUSED). Recorded URLs never carry credentials.

`request_async` is the same call made with aiohttp for a worker's event loop (engine/runner.py,
run_pipeline_async): httpx's asynchronous pool slows down badly with many requests in flight
(encode/httpx#3215; 60-130 requests/s where aiohttp makes 470, 50 in flight, 100 ms each).

Requests go through one client per outbound policy for the whole process (per event loop for
`request_async`), whose pool keeps
connections alive between runs: a new client per request would cost a TLS context and a TCP (and TLS)
handshake each time, more than a quick request itself. Every connection it opens is still checked by
the policy, and it keeps no cookies, so no run sees what a server set for another.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import aiohttp
import httpx
import yarl

from engine.context import ToolContext
from engine.outbound import OutboundPolicy, OutboundRefused, parse_url, redact_url
from store.errors import Permanent, RetryLater, ToolError

__all__ = [
    "close_async_clients",
    "close_clients",
    "read_capped",
    "read_capped_async",
    "request",
    "request_async",
]

_TEXT_LIMIT = 1024 * 1024  # returned text is capped separately from the byte cap on what is read
# Idle connections kept per process: enough for a busy worker's runs to find one open.
_KEEPALIVE_CONNECTIONS = 256
_MAX_REDIRECTS = 20  # httpx's default, for the asynchronous client too
_CLIENTS: dict[OutboundPolicy, httpx.Client] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(policy: OutboundPolicy) -> httpx.Client:
    """The process's client for `policy`: thread-safe, pooled, cookie-free. Created on first use."""
    client = _CLIENTS.get(policy)
    if client is None:
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(policy)
            if client is None:
                # No cap on connections: the worker's concurrency bounds requests in flight.
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=_KEEPALIVE_CONNECTIONS)
                client = httpx.Client(
                    transport=policy.transport(limits=limits),
                    trust_env=False,
                    cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # accepts none
                )
                _CLIENTS[policy] = client
    return client


def close_clients() -> None:
    """Close the process's clients and the connections they keep alive (the next request opens a new
    client). For a process done with outbound calls, or a test whose server goes away: a kept-alive
    connection otherwise stays open until the process ends."""
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


# An asynchronous session serves only the event loop it was made on: one per loop and policy.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[OutboundPolicy, aiohttp.ClientSession]]
_SESSIONS = weakref.WeakKeyDictionary()
_HEADER_BYTES = 100 * 1024  # httpcore's limit on a response's headers


def _session(policy: OutboundPolicy) -> aiohttp.ClientSession:
    """The running loop's session for `policy`, like `_client`: pooled, cookie-free, ignoring proxy
    settings. Used from that loop's thread only."""
    sessions = _SESSIONS.setdefault(asyncio.get_running_loop(), {})
    session = sessions.get(policy)
    if session is None:
        # No cap on connections (limit=0): the worker's concurrency bounds requests in flight.
        session = sessions[policy] = aiohttp.ClientSession(
            connector=policy.connector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            # the response headers httpx reads (100 KB in all, however split), aiohttp reads too: its
            # defaults refuse a line over 8,190 bytes or more than 128 headers
            max_line_size=_HEADER_BYTES,
            max_field_size=_HEADER_BYTES,
            max_headers=_HEADER_BYTES // 4,  # the fewest bytes a header line takes ("a:\r\n")
        )
    return session


async def close_async_clients() -> None:
    """Close the running loop's sessions (a worker does this before its event loop ends)."""
    for session in _SESSIONS.pop(asyncio.get_running_loop(), {}).values():
        await session.close()


def request(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Make one HTTP request. Schemas: catalogs/tools.json, http.request."""
    call = _Call(args, ctx)
    try:
        with _client(ctx.limits.outbound).stream(
            call.method,
            call.url,
            timeout=call.timeout,
            follow_redirects=call.follow_redirects,
            **call.content("content"),
        ) as response:
            body = _Body(response.headers.get("content-length"), call.cap)
            for chunk in response.iter_bytes():
                body.add(chunk)
                if time.monotonic() > call.deadline:  # httpx's timeout bounds each read, not the whole
                    raise TimeoutError
    except (OutboundRefused, TimeoutError, httpx.InvalidURL, httpx.RequestError, ValueError) as e:
        # RequestError: transport failures, too many redirects, undecodable bodies; ValueError: a redirect
        # to a host that is not a valid IDNA name
        raise call.failure(e) from None
    return call.result(response.status_code, response.url, response.headers.multi_items(), body.bytes())


async def request_async(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """`request` on the running event loop, with aiohttp: a worker's runs that wait on I/O share one
    thread (engine/runner.py, run_pipeline_async)."""
    call = _Call(args, ctx)
    try:
        async with _session(ctx.limits.outbound).request(
            call.method,
            # as httpx encoded it, sent as is: aiohttp would otherwise decode escapes such as %7E
            yarl.URL(call.url, encoded=True),
            timeout=aiohttp.ClientTimeout(total=call.timeout),
            allow_redirects=call.follow_redirects,
            max_redirects=_MAX_REDIRECTS,
            **call.content("data"),
        ) as response:
            body = await read_capped_async(response, call.cap)
    except (OutboundRefused, TimeoutError, aiohttp.ClientError, ValueError) as e:
        raise call.failure(e) from None
    # Header values decoded as httpx decodes them (aiohttp's way leaves lone surrogates for bytes
    # that are not UTF-8, which no JSON column accepts).
    headers = httpx.Headers(response.raw_headers).multi_items()
    return call.result(response.status, response.url, headers, body)


class _Call:
    """One request's arguments, and what its failure or response means, whichever client made it."""

    def __init__(self, args: dict[str, Any], ctx: ToolContext) -> None:
        self.args = args
        self.ctx = ctx
        self.method = args.get("method", "GET")
        self.cap = min(
            int(args.get("max_bytes", ctx.limits.http_max_response_bytes)), ctx.limits.http_max_response_bytes
        )
        self.timeout = min(float(args.get("timeout_s", 30.0)), ctx.remaining())
        if self.timeout <= 0:
            raise ToolError("no time left in the step to make the request", code="HTTP_TIMEOUT")
        self.follow_redirects = bool(args.get("follow_redirects", False))
        # Query values as text, spelled as httpx spells them (true/false): aiohttp refuses booleans.
        query = {
            name: ("true" if value else "false") if isinstance(value, bool) else str(value)
            for name, value in (args.get("query") or {}).items()
        }
        # The URL is parsed once, by httpx, whichever client sends it, and `query` is added to the query it
        # has: httpx's own `params` would replace that query (even when empty), aiohttp's adds to it.
        try:
            url = parse_url(args["url"])
            url.host  # noqa: B018 -- decodes an IDNA host, refusing one that is not valid
            self.url = str(url.copy_merge_params(query)) if query else str(url)
        except (httpx.InvalidURL, ValueError) as e:  # idna's errors are ValueErrors
            raise Permanent(f"invalid URL {_safe(args['url'])}: {e}", code="HTTP_INVALID_URL") from None
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout

    def content(self, body_keyword: str) -> dict[str, Any]:
        """The headers and body as a client's keyword arguments (a raw body is httpx's `content`,
        aiohttp's `data`)."""
        options: dict[str, Any] = {"headers": self.args.get("headers")}
        if "json" in self.args:
            options["json"] = self.args["json"]
        elif "body" in self.args:
            options[body_keyword] = self.args["body"].encode()
        return options

    def _what(self) -> str:
        return f"{self.method} {_safe(self.args['url'])}"

    def failure(self, e: Exception) -> Exception:
        if isinstance(e, OutboundRefused):
            return OutboundRefused(f"{self._what()}: {e.message}", details=e.details)
        if isinstance(e, (httpx.TimeoutException, TimeoutError)):
            return ToolError(f"{self._what()} timed out after {self.timeout:.3g} s", code="HTTP_TIMEOUT")
        if isinstance(e, (httpx.InvalidURL, aiohttp.InvalidURL, ValueError)):
            return Permanent(f"invalid URL {_safe(self.args['url'])}: {e}", code="HTTP_INVALID_URL")
        return ToolError(f"{self._what()} failed: {type(e).__name__}: {e}", code="HTTP_UNREACHABLE")

    def result(
        self, status: int, url: Any, header_items: Iterable[tuple[str, str]], body: bytes
    ) -> dict[str, Any]:
        elapsed_ms = round((time.monotonic() - self.started) * 1000, 3)
        headers: dict[str, str] = {}
        for name, value in header_items:  # a repeated header is one comma-separated value
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if self.args.get("fail_on_status", True):
            if status in (429, 503):
                raise RetryLater(_retry_after(headers, self.ctx.now), f"{self._what()} answered {status}")
            if status >= 500:
                raise ToolError(
                    f"{self._what()} answered {status}", code="HTTP_5XX", details={"status": status}
                )
            if status >= 400:
                raise Permanent(
                    f"{self._what()} answered {status}: {body[:200].decode(errors='replace')!r}",
                    code="HTTP_4XX",
                    details={"status": status},
                )
        out: dict[str, Any] = {
            "status": status,
            "url": redact_url(str(url)),
            "headers": headers,
            "elapsed_ms": elapsed_ms,
            "bytes": len(body),
        }
        content_type = headers.get("content-type", "")
        if "json" in content_type:
            try:
                out["json"] = json.loads(body)  # what httpx's Response.json() does: UTF-8/16/32 detected
                return out
            except ValueError:
                pass
        out["text"] = _decode(body, content_type)[:_TEXT_LIMIT]
        return out


class _Body:
    """A response body read in chunks, refusing more than `cap` bytes (declared or actual)."""

    def __init__(self, declared: str | None, cap: int) -> None:
        if declared and declared.isdigit() and int(declared) > cap:
            raise Permanent(
                f"response of {declared} bytes exceeds the {cap}-byte limit", code="RESPONSE_TOO_LARGE"
            )
        self.cap = cap
        self.size = 0
        self.chunks: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            raise Permanent(f"response exceeds the {self.cap}-byte limit", code="RESPONSE_TOO_LARGE")
        self.chunks.append(chunk)

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def _decode(body: bytes, content_type: str) -> str:
    """The body as text, in the charset the Content-Type names (UTF-8 when it names none we know)."""
    header = Message()
    header["content-type"] = content_type
    try:
        return body.decode(header.get_content_charset() or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The response body, refusing to read more than `cap` bytes."""
    body = _Body(response.headers.get("content-length"), cap)
    for chunk in response.iter_bytes():
        body.add(chunk)
    return body.bytes()


async def read_capped_async(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """`read_capped` for an aiohttp response."""
    body = _Body(response.headers.get("content-length"), cap)
    async for chunk in response.content.iter_any():
        body.add(chunk)
    return body.bytes()


def _retry_after(headers: dict[str, str], now: datetime) -> float:
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return 5.0


def _safe(url: str) -> str:
    """The URL without credentials or query string, for messages and logs."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        return "<invalid url>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
