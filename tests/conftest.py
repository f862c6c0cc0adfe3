"""Shared fixtures: one embedded PostgreSQL for the session, a migrated template database, and a
fresh database per test cloned from it (CREATE DATABASE … TEMPLATE), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import structlog
from psycopg import sql

from store.db import Database
from store.embedded import ensure_server
from store.migrate import migrate

REPO = Path(__file__).resolve().parents[1]


def _admin_url(url: str) -> str:
    head, _, query = url.partition("?")
    return head.rsplit("/", 1)[0] + "/postgres" + (f"?{query}" if query else "")


def _with_db(url: str, name: str) -> str:
    head, _, query = url.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def server_url() -> str:
    """The test server: TEST_DATABASE_URL (a server the tests may create databases on) or embedded."""
    external = os.environ.get("ORDO_TEST_DATABASE_URL")
    if external:
        return external
    url = ensure_server(REPO / ".ordo-test", database="postgres")
    # A throwaway cluster: durability costs only time here (CREATE DATABASE per test fsyncs files).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
    return url


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A migrated database to clone; named per session so concurrent test runs do not collide."""
    name = f"ordo_template_{os.getpid()}"
    admin = _admin_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = Database(_with_db(server_url, name), pool_size=1)
    migrate(db)
    db.dispose()
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def cloned_database(server_url: str, template_db: str, prefix: str = "t") -> Iterator[str]:
    """A fresh, migrated database cloned from the template; dropped when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield _with_db(server_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    with cloned_database(server_url, template_db) as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, pool_size=5)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def log() -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger("test")
