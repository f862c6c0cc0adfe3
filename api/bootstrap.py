"""First start: an admin agent and token, so a fresh installation can be driven over the API."""

from __future__ import annotations

from store import agents
from store.db import Database

__all__ = ["ADMIN_AGENT", "ensure_admin_token"]

ADMIN_AGENT = "admin"


def ensure_admin_token(db: Database) -> str | None:
    """Create the `admin` agent and an admin token if no admin token was ever issued; return the token
    (to be shown once). None when one already exists. Safe when several processes start together."""
    with db.tx() as conn:
        agents.bootstrap_lock(conn)
        if agents.admin_token_exists(conn):
            return None
        agent = agents.ensure_agent(conn, ADMIN_AGENT)
        _, token = agents.create_token(conn, agent["id"], [agents.ADMIN], name="bootstrap (ordo up)")
        return token
