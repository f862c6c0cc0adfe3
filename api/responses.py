"""JSON responses serialised by pydantic-core (Rust) without response-model validation.

The bodies are built by the store's `public()` functions, whose shapes the response models in
api/schemas.py document; the OpenAPI document still names those models, and tests/api's schemathesis
run checks every response against them. Skipping the validation pass roughly halves the cost of
answering a page of runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Response
from pydantic_core import to_json

__all__ = ["json_body"]


def json_body(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        to_json(content), status_code=status_code, headers=dict(headers or {}), media_type="application/json"
    )
