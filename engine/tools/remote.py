"""Catalog tools that run as HTTP endpoints: the input is POSTed as JSON; the JSON reply is the output.

An operator writes these URLs into a catalog, so they are trusted: they do not go through the
outbound policy that user-supplied URLs do (a tool service on localhost or a private network is the
normal case), and proxy settings in the environment apply. Messages name the endpoint without
credentials.

Each endpoint is a blocking tool (`http_tool`, httpx) and an asynchronous one (`async_http_tool`,
aiohttp), so a worker awaits pipelines of such tools on its event loop (engine/runner.py). Both keep
their connections open between calls: one client per process, one session per event loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import aiohttp
import httpx

from engine.context import ToolContext
from engine.outbound import redact_url
from engine.tools.http import read_capped, read_capped_async
from store.errors import Permanent, RetryLater, ToolError

__all__ = ["async_http_tool", "close_async_clients", "http_tool"]

_CLIENT: httpx.Client | None = None
_CLIENT_LOCK = threading.Lock()
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]
_SESSIONS = weakref.WeakKeyDictionary()


def http_tool(url: str, headers: dict[str, str]) -> Callable[[dict[str, Any], ToolContext], dict[str, Any]]:
    endpoint = _Endpoint(url, headers)

    def call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        try:
            with _client().stream(
                "POST",
                url,
                json=args,
                headers=endpoint.headers(ctx),
                timeout=max(0.001, ctx.remaining()),
                follow_redirects=False,
            ) as response:
                body = read_capped(response, ctx.limits.http_max_response_bytes)
        except httpx.TransportError as e:
            raise endpoint.failure(e) from None
        return endpoint.result(response.status_code, response.headers.get("retry-after"), body)

    return call


def async_http_tool(
    url: str, headers: dict[str, str]
) -> Callable[[dict[str, Any], ToolContext], Awaitable[dict[str, Any]]]:
    endpoint = _Endpoint(url, headers)

    async def call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        try:
            async with _session().post(
                url,
                json=args,
                headers=endpoint.headers(ctx),
                timeout=aiohttp.ClientTimeout(total=max(0.001, ctx.remaining())),
                allow_redirects=False,
            ) as response:
                body = await read_capped_async(response, ctx.limits.http_max_response_bytes)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise endpoint.failure(e) from None
        return endpoint.result(response.status, response.headers.get("retry-after"), body)

    return call


async def close_async_clients() -> None:
    """Close the running loop's session (a worker does this before its event loop ends)."""
    session = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


class _Endpoint:
    """One catalog endpoint: what its calls send, and what its answers and failures mean."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.fixed_headers = headers
        self.shown = redact_url(url)

    def headers(self, ctx: ToolContext) -> dict[str, str]:
        return {
            **self.fixed_headers,
            "content-type": "application/json",
            "x-ordo-run-id": str(ctx.run.get("id", "")),
            "x-ordo-step": ctx.step_id,
        }

    def failure(self, e: Exception) -> ToolError:
        if isinstance(e, (httpx.TimeoutException, TimeoutError)):
            return ToolError(f"tool endpoint {self.shown} did not answer in time", code="HTTP_TIMEOUT")
        return ToolError(f"tool endpoint {self.shown} is unreachable: {e}", code="HTTP_UNREACHABLE")

    def result(self, status: int, retry_after: str | None, body: bytes) -> dict[str, Any]:
        if status in (429, 503):
            raise RetryLater(_retry_after(retry_after), f"tool endpoint answered {status}")
        if status >= 500:
            raise ToolError(f"tool endpoint answered {status}", code="HTTP_5XX")
        if status >= 300:
            raise Permanent(f"tool endpoint answered {status}: {body[:200]!r}", code="HTTP_REFUSED")
        try:
            return httpx.Response(200, content=body).json()  # type: ignore[no-any-return]
        except ValueError:
            raise ToolError(
                f"tool endpoint {self.shown} did not answer with JSON", code="HTTP_NOT_JSON"
            ) from None


def _client() -> httpx.Client:
    """The process's client for tool endpoints: thread-safe, pooled (a client per call opened a
    connection per call), cookie-free. Created on first use."""
    global _CLIENT
    if _CLIENT is None:
        with _CLIENT_LOCK:
            if _CLIENT is None:
                _CLIENT = httpx.Client(
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                    cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # no run sees another's
                )
    return _CLIENT


def _session() -> aiohttp.ClientSession:
    """The running loop's session for tool endpoints. Used from that loop's thread only."""
    loop = asyncio.get_running_loop()
    session = _SESSIONS.get(loop)
    if session is None:
        session = _SESSIONS[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(), trust_env=True
        )
    return session


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value if value is not None else "5"))
    except ValueError:
        return 5.0
