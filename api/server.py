"""`ordo api`: the app under uvicorn with production settings (httptools, uvloop, no access log, no
reload), one or more server processes sharing the listening socket."""

from __future__ import annotations

import functools

import uvicorn
from uvicorn.supervisors import Multiprocess

from api.app import create_app
from store.settings import Settings

__all__ = ["serve", "uvicorn_config"]


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        # A factory, not an import string: each server process builds the app from these settings
        # (picklable), so no environment variable has to carry them.
        functools.partial(create_app, settings),
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,  # structlog is configured by the CLI; uvicorn must not replace it
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles the signals and drains connections)."""
    config = uvicorn_config(settings)
    server = uvicorn.Server(config)
    if config.workers <= 1:
        server.run()
        return
    sock = config.bind_socket()
    Multiprocess(config, sockets=[sock]).run()
