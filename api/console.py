"""The web console: static files under /ui (api/ui/), served by the API process itself.

The console is plain HTML, CSS and JavaScript modules: nothing to build, nothing fetched from another
site. It talks only to the public JSON API, with the token the user pastes, kept in the tab's session
storage. Because a script that ran in the page could read that token, the pages forbid everything
but this origin's own files (Content-Security-Policy), are never framed, and send no referrer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["UI_DIR", "mount_console"]

UI_DIR = Path(__file__).resolve().parent / "ui"

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate every time (a 304 costs a round trip, not a download): an upgraded Ordo serves its
    # new console at once instead of a mix of cached old modules and new ones.
    "Cache-Control": "no-cache",
}


class _ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve the console at /ui/ (and redirect /ui there, so relative paths resolve)."""

    @app.get("/ui", include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=308)

    app.mount("/ui/", _ConsoleFiles(directory=UI_DIR, html=True), name="console")
