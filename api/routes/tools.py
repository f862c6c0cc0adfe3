"""The tool catalog, so agents can discover what their pipelines may call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import Caller, CheckedRoute, Registry
from api.errors import responses
from api.schemas import ToolPublic
from store.agents import Principal
from store.errors import NotFound

__all__ = ["router"]

router = APIRouter(prefix="/tools", tags=["tools"], route_class=CheckedRoute)


@router.get("", response_model=list[ToolPublic], responses=responses(401, 429, 503))
async def list_tools(caller: Caller, registry: Registry) -> Any:
    """Every tool with its input/output JSON Schemas, the scopes it needs, and whether the caller
    holds them."""
    return [_describe(registry[address].describe(), caller) for address in registry]


@router.get("/{address}", response_model=ToolPublic, responses=responses(401, 404, 422, 429, 503))
async def get_tool(
    address: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=200)],
    caller: Caller,
    registry: Registry,
) -> Any:
    if address not in registry:
        raise NotFound(
            f"unknown tool {address!r}; known tools: {', '.join(registry)}", details={"tool": address}
        )
    return _describe(registry[address].describe(), caller)


def _describe(tool: dict[str, Any], caller: Principal) -> dict[str, Any]:
    return {**tool, "allowed": caller.is_admin or set(tool["scopes"]) <= caller.scopes}
