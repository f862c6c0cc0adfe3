"""http.request: one HTTP call with httpx, bounded in time and in response size, to where the
outbound policy allows (engine/outbound.py: public addresses, plus ORDO_OUTBOUND_ALLOW), checked
after DNS resolution and again at every redirect.

Failures steer retries: a timeout, a refused connection or a 5xx may succeed later (retryable);
429/503 honour Retry-After; other 4xx are permanent unless `fail_on_status` is false, in which case
the status is returned as output for a later step to inspect. A URL the policy refuses fails
permanently (OUTBOUND_REFUSED). Recorded URLs never carry credentials.

Requests go through one client per outbound policy for the whole process, whose pool keeps
connections alive between runs: a new client per request would cost a TLS context and a TCP (and TLS)
handshake each time, more than a quick request itself. Every connection it opens is still checked by
the policy, and it keeps no cookies, so no run sees what a server set for another.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from engine.context import ToolContext
from engine.outbound import OutboundPolicy, OutboundRefused, redact_url
from store.errors import Permanent, RetryLater, ToolError

__all__ = ["read_capped", "request"]

_TEXT_LIMIT = 1024 * 1024  # returned text is capped separately from the byte cap on what is read
# Idle connections kept per process: enough for a busy worker's runs to find one open.
_KEEPALIVE_CONNECTIONS = 256
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


def request(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Make one HTTP request. Schemas: catalogs/tools.json, http.request."""
    method = args.get("method", "GET")
    cap = min(
        int(args.get("max_bytes", ctx.limits.http_max_response_bytes)), ctx.limits.http_max_response_bytes
    )
    timeout = min(float(args.get("timeout_s", 30.0)), ctx.remaining())
    if timeout <= 0:
        raise ToolError("no time left in the step to make the request", code="HTTP_TIMEOUT")
    content: dict[str, Any] = {}
    if "json" in args:
        content["json"] = args["json"]
    elif "body" in args:
        content["content"] = args["body"].encode()
    started = time.monotonic()
    try:
        with _client(ctx.limits.outbound).stream(
            method,
            args["url"],
            headers=args.get("headers"),
            params=args.get("query"),
            timeout=timeout,
            follow_redirects=bool(args.get("follow_redirects", False)),
            **content,
        ) as response:
            body = read_capped(response, cap)
    except OutboundRefused as e:
        raise OutboundRefused(f"{method} {_safe(args['url'])}: {e.message}", details=e.details) from None
    except httpx.TimeoutException:
        raise ToolError(
            f"{method} {_safe(args['url'])} timed out after {timeout:.3g} s", code="HTTP_TIMEOUT"
        ) from None
    except httpx.InvalidURL as e:
        raise Permanent(f"invalid URL {_safe(args['url'])}: {e}", code="HTTP_INVALID_URL") from None
    except httpx.TransportError as e:
        raise ToolError(
            f"{method} {_safe(args['url'])} failed: {type(e).__name__}: {e}", code="HTTP_UNREACHABLE"
        ) from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 3)
    status = response.status_code
    if args.get("fail_on_status", True):
        if status in (429, 503):
            raise RetryLater(
                _retry_after(response, ctx.now), f"{method} {_safe(args['url'])} answered {status}"
            )
        if status >= 500:
            raise ToolError(
                f"{method} {_safe(args['url'])} answered {status}",
                code="HTTP_5XX",
                details={"status": status},
            )
        if status >= 400:
            raise Permanent(
                f"{method} {_safe(args['url'])} answered {status}: {body[:200].decode(errors='replace')!r}",
                code="HTTP_4XX",
                details={"status": status},
            )
    out: dict[str, Any] = {
        "status": status,
        "url": redact_url(response.url),
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "elapsed_ms": elapsed_ms,
        "bytes": len(body),
    }
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if "json" in response.headers.get("content-type", ""):
        try:
            out["json"] = httpx.Response(200, content=body).json()
        except ValueError:
            out["text"] = text[:_TEXT_LIMIT]
    else:
        out["text"] = text[:_TEXT_LIMIT]
    return out


def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The response body, refusing to read more than `cap` bytes."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise Permanent(
            f"response of {declared} bytes exceeds the {cap}-byte limit", code="RESPONSE_TOO_LARGE"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise Permanent(f"response exceeds the {cap}-byte limit", code="RESPONSE_TOO_LARGE")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(response: httpx.Response, now: datetime) -> float:
    value = response.headers.get("retry-after", "").strip()
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
