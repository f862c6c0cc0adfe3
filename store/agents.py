"""Agents and their API tokens: creation, authentication, revocation.

A token is `ordo_<public_id>_<secret>`: `public_id` (12 base32 characters) finds the row, the secret
(32 random bytes) makes it unguessable. Only the SHA-256 of the whole token is stored, and it is
compared with `hmac.compare_digest`. A token's scopes say what it may do: the route scopes below,
and tool scopes from the catalog (`tools:http`) that let its tasks call those tools. `admin` may do
everything, for every agent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store import keyset
from store import tasks as store_tasks
from store.domain import ADMIN, ROUTE_SCOPES, iso_utc
from store.errors import AlreadyExists, Conflict, InvalidInput, NotFound, Unauthorized
from store.keyset import Page
from store.sql import load_queries
from store.tasks import LOCAL_AGENT_ID

__all__ = [
    "ADMIN",
    "AUTH_CHANNEL",
    "ROUTE_SCOPES",
    "Principal",
    "authenticate",
    "create_agent",
    "create_token",
    "disable_agent",
    "ensure_agent",
    "find_token",
    "get_agent",
    "hash_token",
    "list_agents",
    "list_tokens",
    "public_agent",
    "public_token",
    "revoke_token",
    "tokens_with_agents",
    "validate_agent_name",
    "validate_scopes",
]

Q = load_queries("store", "agents.sql")

AUTH_CHANNEL = "ordo_api_auth"  # NOTIFY channel: a token was revoked or an agent deleted

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_SCOPE = re.compile(r"^[a-z][a-z0-9_]*(:[a-z0-9_.*-]+)?$")
_TOKEN = re.compile(r"^ordo_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$")
_PUBLIC = re.compile(r"^ordo_([a-z2-7]{12})(?:_[A-Za-z0-9_-]{43})?$")
_TOUCH_EVERY_S = 60.0
# The same answer for an unknown public id and a wrong secret: a caller learns nothing from it.
_INVALID = (
    "invalid API token; send 'Authorization: Bearer ordo_...' with a token issued by `ordo token create`"
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the agent, the token it used, and that token's scopes."""

    agent_id: UUID
    agent_name: str
    token_id: UUID | None
    scopes: frozenset[str]
    expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def owner(self) -> UUID | None:
        """The agent whose rows this caller may see; None (every agent) for admins."""
        return None if self.is_admin else self.agent_id

    @property
    def tool_scopes(self) -> frozenset[str] | None:
        """Scopes checked against the catalog's tool scopes; None (every tool) for admins."""
        return None if self.is_admin else self.scopes

    def has(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def validate_agent_name(name: Any) -> str:
    if not isinstance(name, str) or not _AGENT_NAME.match(name):
        raise InvalidInput(
            f"invalid agent name {name!r}: 1-100 characters, letters, digits and _ . @ - "
            "(starting with a letter or digit)",
            details={"path": "name"},
            code="INVALID_AGENT_NAME",
        )
    return name


def validate_scopes(scopes: Iterable[Any], known: Collection[str]) -> list[str]:
    """Scopes as given, de-duplicated and sorted; each must be a route scope or a scope a tool needs."""
    out: set[str] = set()
    for i, scope in enumerate(scopes):
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise InvalidInput(
                f"scopes[{i}]: {scope!r} is not a scope name such as 'tasks:read'",
                details={"path": f"scopes[{i}]"},
                code="INVALID_SCOPE",
            )
        if scope not in known:
            raise InvalidInput(
                f"scopes[{i}]: unknown scope {scope!r}; known scopes: {', '.join(sorted(known))}",
                details={"path": f"scopes[{i}]", "known": sorted(known)},
                code="INVALID_SCOPE",
            )
        out.add(scope)
    return sorted(out)


# -- agents ---------------------------------------------------------------------------------------


def create_agent(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(Q["insert_agent"], {"name": validate_agent_name(name)}).mappings().one_or_none()
    if row is None:
        raise AlreadyExists(f"an agent named {name!r} already exists", details={"name": name})
    return dict(row)


def ensure_agent(conn: Connection, name: str) -> dict[str, Any]:
    """The agent with this name, created if missing."""
    validate_agent_name(name)
    row = conn.execute(Q["insert_agent"], {"name": name}).mappings().one_or_none()
    if row is None:
        row = conn.execute(Q["get_agent_by_name"], {"name": name}).mappings().one()
    return dict(row)


def get_agent(conn: Connection, agent_id: UUID) -> dict[str, Any]:
    row = conn.execute(Q["get_agent"], {"id": agent_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"agent {agent_id} not found", details={"agent_id": str(agent_id)})
    return dict(row)


def list_agents(conn: Connection, *, cursor: str | None = None, limit: int = 50) -> Page:
    after_created, after_id = keyset.decode(cursor, datetime, UUID) if cursor else (None, None)
    rows = (
        conn.execute(
            Q["list_agents"], {"after_created": after_created, "after_id": after_id, "limit": limit + 1}
        )
        .mappings()
        .all()
    )
    return keyset.page([dict(r) for r in rows], limit, lambda r: (r["created_at"], r["id"]))


def disable_agent(conn: Connection, agent_id: UUID, *, by: UUID) -> dict[str, Any]:
    """Soft delete: revoke every token and pause every active task; tasks and history stay."""
    if agent_id == LOCAL_AGENT_ID:
        raise Conflict("the 'local' agent owns the tasks added with the CLI; it cannot be deleted")
    if agent_id == by:
        raise Conflict("an agent cannot delete itself; use another admin token")
    get_agent(conn, agent_id)
    conn.execute(Q["revoke_agent_tokens"], {"agent_id": agent_id})
    conn.execute(Q["notify_auth_change"], {"what": f"agent {agent_id}"})
    for task_id in conn.execute(Q["active_task_ids"], {"agent_id": agent_id}).scalars().all():
        store_tasks.pause(conn, task_id)
    return dict(conn.execute(Q["disable_agent"], {"id": agent_id}).mappings().one())


def public_agent(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "created_at": iso_utc(row["created_at"]),
        "disabled_at": iso_utc(row["disabled_at"]),
    }


# -- tokens ---------------------------------------------------------------------------------------


def create_token(
    conn: Connection,
    agent_id: UUID,
    scopes: Collection[str],
    *,
    name: str = "",
    created_by: UUID | None = None,
    expires_at: datetime | None = None,
) -> tuple[dict[str, Any], str]:
    """A new token for the agent: its row and the token itself, which exists only in this return value."""
    agent = get_agent(conn, agent_id)
    if agent["disabled_at"] is not None:
        raise Conflict(f"agent {agent['name']!r} is deleted; it cannot get new tokens")
    public_id = base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]
    token = f"ordo_{public_id}_{secrets.token_urlsafe(32)}"
    row = (
        conn.execute(
            Q["insert_token"],
            {
                "agent_id": agent_id,
                "public_id": public_id,
                "secret_hash": hash_token(token),
                "scopes": sorted(set(scopes)),
                "name": name,
                "created_by": created_by,
                "expires_at": expires_at,
            },
        )
        .mappings()
        .one()
    )
    return dict(row), token


def authenticate(conn: Connection, token: str) -> Principal:
    """The principal behind a bearer token. Raises Unauthorized for anything but a live, valid token."""
    match = _TOKEN.match(token)
    if match is None:
        raise Unauthorized(_INVALID)
    row = conn.execute(Q["token_for_auth"], {"public_id": match[1]}).mappings().one_or_none()
    # Compare even when the row is missing, so both failures take the same time.
    stored = row["secret_hash"] if row is not None else b"\0" * 32
    if not hmac.compare_digest(bytes(stored), hash_token(token)) or row is None:
        raise Unauthorized(_INVALID)
    if row["revoked_at"] is not None:
        raise Unauthorized("this API token was revoked", details={"token_id": str(row["id"])})
    if row["expires_at"] is not None and row["expires_at"] <= row["db_now"]:
        raise Unauthorized(
            f"this API token expired at {iso_utc(row['expires_at'])}", details={"token_id": str(row["id"])}
        )
    if row["agent_disabled_at"] is not None:
        raise Unauthorized(
            f"agent {row['agent_name']!r} was deleted", details={"agent_id": str(row["agent_id"])}
        )
    last = row["last_used_at"]
    if last is None or (row["db_now"] - last).total_seconds() >= _TOUCH_EVERY_S:
        conn.execute(Q["touch_token"], {"id": row["id"]})
    return Principal(
        row["agent_id"], row["agent_name"], row["id"], frozenset(row["scopes"]), row["expires_at"]
    )


def list_tokens(conn: Connection, agent_id: UUID) -> list[dict[str, Any]]:
    get_agent(conn, agent_id)
    return [dict(r) for r in conn.execute(Q["list_tokens"], {"agent_id": agent_id}).mappings().all()]


def tokens_with_agents(
    conn: Connection, *, agent_name: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Tokens (never their secrets) with their agent's name, oldest first."""
    rows = conn.execute(Q["tokens_with_agents"], {"agent_name": agent_name, "limit": limit}).mappings()
    return [dict(r) for r in rows]


def find_token(conn: Connection, ref: str) -> dict[str, Any]:
    """A token by its id or its public part (`ordo_<public_id>`, or the whole token)."""
    match = _PUBLIC.match(ref.strip())
    token_id = _uuid_or_none(ref.strip())
    if match is None and token_id is None:
        raise InvalidInput(
            "give a token id (a UUID) or its public part (ordo_ and 12 letters and digits)",
            details={"path": "token"},
        )
    params = {"id": token_id, "public_id": match[1] if match else None}
    row = conn.execute(Q["find_token"], params).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no token {ref.strip()[:40]!r}", details={"token": ref.strip()[:40]})
    return dict(row)


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def revoke_token(conn: Connection, agent_id: UUID, token_id: UUID) -> dict[str, Any]:
    row = conn.execute(Q["revoke_token"], {"id": token_id, "agent_id": agent_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"token {token_id} of agent {agent_id} not found", details={"token_id": str(token_id)})
    conn.execute(Q["notify_auth_change"], {"what": f"token {token_id}"})
    return dict(row)


def admin_token_exists(conn: Connection) -> bool:
    return bool(conn.execute(Q["admin_token_exists"]).scalar_one())


def bootstrap_lock(conn: Connection) -> None:
    conn.execute(Q["bootstrap_lock"])


def public_token(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "agent_id": str(row["agent_id"]),
        "prefix": f"ordo_{row['public_id']}",
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "created_at": iso_utc(row["created_at"]),
        "expires_at": iso_utc(row["expires_at"]),
        "last_used_at": iso_utc(row["last_used_at"]),
        "revoked_at": iso_utc(row["revoked_at"]),
    }
