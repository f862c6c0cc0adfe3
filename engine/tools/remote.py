"""Catalog tools that run as HTTP endpoints: the input is POSTed as JSON; the JSON reply is the output.

An operator writes these URLs into a catalog, so they are trusted: they do not go through the
outbound policy that user-supplied URLs do (a tool service on localhost or a private network is the
normal case). Messages name the endpoint without credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from engine.context import ToolContext
from engine.outbound import redact_url
from engine.tools.http import read_capped
from store.errors import Permanent, RetryLater, ToolError

__all__ = ["http_tool"]


def http_tool(url: str, headers: dict[str, str]) -> Callable[[dict[str, Any], ToolContext], dict[str, Any]]:
    shown = redact_url(url)

    def call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        request_headers = {
            **headers,
            "content-type": "application/json",
            "x-ordo-run-id": str(ctx.run.get("id", "")),
            "x-ordo-step": ctx.step_id,
        }
        try:
            with (
                httpx.Client(timeout=max(0.001, ctx.remaining()), follow_redirects=False) as client,
                client.stream("POST", url, json=args, headers=request_headers) as response,
            ):
                body = read_capped(response, ctx.limits.http_max_response_bytes)
        except httpx.TimeoutException:
            raise ToolError(f"tool endpoint {shown} did not answer in time", code="HTTP_TIMEOUT") from None
        except httpx.TransportError as e:
            raise ToolError(f"tool endpoint {shown} is unreachable: {e}", code="HTTP_UNREACHABLE") from None
        if response.status_code in (429, 503):
            raise RetryLater(_retry_after(response), f"tool endpoint answered {response.status_code}")
        if response.status_code >= 500:
            raise ToolError(f"tool endpoint answered {response.status_code}", code="HTTP_5XX")
        if response.status_code >= 300:
            raise Permanent(
                f"tool endpoint answered {response.status_code}: {body[:200]!r}", code="HTTP_REFUSED"
            )
        try:
            return httpx.Response(200, content=body).json()
        except ValueError:
            raise ToolError(f"tool endpoint {shown} did not answer with JSON", code="HTTP_NOT_JSON") from None

    return call


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "5")))
    except ValueError:
        return 5.0
