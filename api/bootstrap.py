"""First start: an admin agent and token, so a fresh installation can be driven over the API."""

from __future__ import annotations

from store import agents, audit
from store.agents import Principal
from store.db import Database
from store.tasks import LOCAL_AGENT_ID

__all__ = ["ADMIN_AGENT", "ensure_admin_token"]

ADMIN_AGENT = "admin"
# The operator at the host, as recorded in the audit log.
_LOCAL = Principal(LOCAL_AGENT_ID, "local", None, frozenset({agents.ADMIN}))


def ensure_admin_token(db: Database) -> str | None:
    """Create the `admin` agent and an admin token if no admin token was ever issued; return the token
    (to be shown once). None when one already exists. Safe when several processes start together."""
    with db.tx() as conn:
        agents.bootstrap_lock(conn)
        if agents.admin_token_exists(conn):
            return None
        agent = agents.ensure_agent(conn, ADMIN_AGENT)
        row, token = agents.create_token(conn, agent["id"], [agents.ADMIN], name="bootstrap (ordo up)")
        audit.record(
            conn,
            _LOCAL,
            "token.create",
            "token",
            row["id"],
            {"agent_id": str(agent["id"]), "scopes": [agents.ADMIN]},
        )
        return token
