"""The API's documentation, served by Ordo itself so that it works without internet: Swagger UI at
/docs and ReDoc at /redoc load their scripts from api/static/docs (swagger-ui-dist 5.35.0 and redoc
2.5.4 as published on npm, with their licenses), never from a CDN.

The OpenAPI document also says, for every operation, what it takes to call it: the scope
(`x-required-scope` and a first line of its description), any valid token, or nothing; and that a
request which is not valid HTTP gets the HTTP server's plain-text 400 before any route sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from api.deps import BEARER

__all__ = ["ASSETS_PATH", "install"]

ASSETS_PATH = "/docs/static"
_ASSETS = resources.files("api").joinpath("static", "docs")


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; document each operation's scope in the OpenAPI document.
    The app must be created with docs_url=None and redoc_url=None."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(_ASSETS)), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # No validator badge: it would send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            with_google_fonts=False,
        )

    generate = app.openapi

    def openapi_with_scopes() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _document_access(app, schema)
            _document_malformed_requests(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_scopes  # type: ignore[method-assign]


def _document_access(app: FastAPI, schema: dict[str, Any]) -> None:
    # The bearer scheme is called by the authenticating dependency rather than declared as one of its
    # own (api/deps.py), so it is named here, as FastAPI would name a declared one.
    bearer = {BEARER.scheme_name: []}
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        scope, authenticated = _access(route.dependant)
        for method in route.methods:
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if scope is not None or authenticated:
                operation["security"] = [bearer]
                schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
                schemes[BEARER.scheme_name] = jsonable_encoder(BEARER.model, by_alias=True, exclude_none=True)
            if scope is not None:
                line = f"**Scope:** `{scope}` (or `admin`)." if scope != "admin" else "**Scope:** `admin`."
                operation["x-required-scope"] = scope
            elif authenticated:
                line = "**Scope:** none; any valid token."
            else:
                line = "**Authentication:** none."
            operation["description"] = f"{line}\n\n{operation.get('description', '')}".rstrip()


_MALFORMED = (
    "A request that is not valid HTTP (a malformed header, say) is answered by the HTTP server, in "
    "plain text."
)


def _document_malformed_requests(schema: dict[str, Any]) -> None:
    # uvicorn answers such a request itself (400, `text/plain`, "Invalid HTTP request received."),
    # whichever operation it was meant for.
    plain = {"schema": {"type": "string"}}
    for item in schema["paths"].values():
        for operation in item.values():
            answers = operation.setdefault("responses", {})
            if "400" in answers:
                answers["400"]["description"] = f"{answers['400']['description']} {_MALFORMED}"
                answers["400"].setdefault("content", {})["text/plain"] = plain
            else:
                answers["400"] = {"description": _MALFORMED, "content": {"text/plain": plain}}


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    # Routers included in the app may stand as one entry each (FastAPI keeps the router behind it).
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(router.routes)


def _access(dependant: Any) -> tuple[str | None, bool]:
    """The scope a route's dependencies require (None: none), and whether they authenticate at all."""
    scope, authenticated = None, False
    for call in _calls(dependant):
        if getattr(call, "required_scope", None):
            scope = call.required_scope
        if getattr(call, "authenticates", False):
            authenticated = True
    return scope, authenticated


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)
