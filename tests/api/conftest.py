"""API fixtures: the real app on a fresh migrated database, a TestClient, and tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api import create_app
from api.bootstrap import ensure_admin_token
from store import agents
from store.db import Database
from store.settings import Settings
from tests.helpers import REGISTRY

TokenFactory = Callable[..., str]
REPO_ROOT = Path(__file__).resolve().parents[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def echo_task(**fields: Any) -> dict[str, Any]:
    """A valid manual task whose pipeline echoes a message."""
    return {
        "title": "say hello",
        "schedule_kind": "manual",
        "payload": {
            "params": {"who": "world"},
            "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hello ${params.who}"}}],
        },
        **fields,
    }


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, api_rate_limit_per_min=1_000_000)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app under a real uvicorn server on a free port, in a thread; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http="httptools",
        loop="asyncio",
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def base_url(settings: Settings, db: Database) -> Iterator[str]:
    with serving(create_app(settings, db, registry=REGISTRY)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


@pytest.fixture
def admin_token(db: Database) -> str:
    token = ensure_admin_token(db)
    assert token is not None
    return token


@pytest.fixture
def make_token(db: Database) -> TokenFactory:
    """make_token("agent-name", "tasks:read", ...) -> a fresh token for that agent (created if missing)."""

    def make(agent: str, *scopes: str) -> str:
        with db.tx() as conn:
            row = agents.ensure_agent(conn, agent)
            _, token = agents.create_token(conn, row["id"], scopes)
        return token

    return make


AGENT_SCOPES = ("tasks:read", "tasks:write", "runs:read", "events:publish")


@pytest.fixture
def alice(make_token: TokenFactory) -> dict[str, str]:
    """Headers of agent 'alice' holding every non-admin route scope."""
    return bearer(make_token("alice", *AGENT_SCOPES))


@pytest.fixture
def bob(make_token: TokenFactory) -> dict[str, str]:
    """Headers of agent 'bob' holding every non-admin route scope."""
    return bearer(make_token("bob", *AGENT_SCOPES))


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    return bearer(admin_token)
