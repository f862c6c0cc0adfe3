"""echo.message and transform.jmespath: the smallest useful tools, and the cheapest (they run inline)."""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from engine.context import ToolContext
from engine.templates import evaluate
from store.errors import Permanent

__all__ = ["echo", "transform"]


def echo(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Return the message (and optional data) unchanged. Schemas: catalogs/tools.json, echo.message."""
    out: dict[str, Any] = {"message": args["message"]}
    if "data" in args:
        out["data"] = args["data"]
    return out


def transform(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Evaluate a JMESPath expression over `data`. Schemas: catalogs/tools.json, transform.jmespath."""
    try:
        result = evaluate(jmespath.compile(args["expression"]), args.get("data"))
    except (JMESPathError, ValueError) as e:
        raise Permanent(f"expression {args['expression']!r} failed: {e}", code="EXPRESSION_FAILED") from None
    return {"result": result}
