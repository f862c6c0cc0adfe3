"""Verified tokens are cached per API process; revocation anywhere still takes effect at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from api.auth import TokenCache
from store import agents
from store.agents import Principal
from store.db import Database
from tests.api.conftest import TokenFactory, bearer
from tests.helpers import wait_for


def _principal() -> Principal:
    return Principal(uuid.uuid4(), "x", uuid.uuid4(), frozenset({"tasks:read"}))


def test_a_revocation_made_elsewhere_reaches_the_api(
    client: httpx.Client, make_token: TokenFactory, db: Database
) -> None:
    """A token revoked by another process (here: straight through the store) is refused by an API
    process that had it cached, as soon as the NOTIFY arrives."""
    token = make_token("nina", "tasks:read")
    assert client.get("/tasks", headers=bearer(token)).status_code == 200  # now cached
    with db.tx() as conn:
        row = agents.authenticate(conn, token)
        agent_id, token_id = row.agent_id, row.token_id
    assert token_id is not None

    with db.tx() as conn:
        agents.revoke_token(conn, agent_id, token_id)

    wait_for(
        lambda: client.get("/tasks", headers=bearer(token)).status_code == 401, timeout=5, what="the 401"
    )


def test_a_cached_token_still_expires(client: httpx.Client, db: Database) -> None:
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, "otto")
        _, token = agents.create_token(
            conn, agent["id"], ["tasks:read"], expires_at=datetime.now(UTC) + timedelta(seconds=1.5)
        )
    assert client.get("/tasks", headers=bearer(token)).status_code == 200

    wait_for(lambda: client.get("/tasks", headers=bearer(token)).status_code == 401, timeout=5, what="expiry")


def test_a_lookup_that_raced_with_a_revocation_is_not_cached() -> None:
    cache = TokenCache()
    cache.enable(True)
    started_at = cache.generation

    cache.invalidate()  # a revocation heard while the lookup ran
    cache.put(b"k", _principal(), started_at)

    assert cache.get(b"k") is None


def test_nothing_is_cached_while_revocations_cannot_be_heard() -> None:
    cache = TokenCache()
    cache.put(b"k", _principal(), cache.generation)
    assert cache.get(b"k") is None

    cache.enable(True)
    cache.put(b"k", p := _principal(), cache.generation)
    assert cache.get(b"k") == p

    cache.enable(False)
    assert cache.get(b"k") is None


def test_entries_expire_after_the_ttl() -> None:
    now = [0.0]
    cache = TokenCache(ttl_s=60, clock=lambda: now[0])
    cache.enable(True)
    cache.put(b"k", _principal(), cache.generation)

    now[0] = 59.9
    assert cache.get(b"k") is not None
    now[0] = 60.0
    assert cache.get(b"k") is None
