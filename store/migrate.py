"""Forward-only SQL migrations: `migrations/NNNN_name.sql`, applied in order, one transaction each.

Two processes may migrate at once (`ordo up` and `ordo worker` starting together): a transaction-level
advisory lock serialises them, and the second finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import exc, text

from store.db import Database
from store.errors import StoreError

__all__ = ["Migration", "available", "migrate", "pending"]

# Arbitrary constant naming the migration lock among the application's advisory locks.
_MIGRATION_LOCK = 7_420_001
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migration files share a number: {versions}")
    return found


def _applied(conn) -> dict[int, str]:
    exists = conn.execute(text("SELECT to_regclass('schema_migration') IS NOT NULL")).scalar_one()
    if not exists:
        return {}
    rows = conn.execute(text("SELECT version, checksum FROM schema_migration")).all()
    return {r.version: r.checksum for r in rows}


def pending(db: Database) -> list[Migration]:
    """Migrations not yet applied; also refuses a database whose applied migrations were edited."""
    with db.tx() as conn:
        applied = _applied(conn)
    todo = []
    for m in available():
        if m.version not in applied:
            todo.append(m)
        elif applied[m.version] != m.checksum:
            raise StoreError(
                f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                "migrations are forward-only: add a new one instead"
            )
    return todo


def migrate(db: Database) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    done: list[str] = []
    for m in available():
        with db.tx() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            applied = _applied(conn)
            if not applied:
                # Only when missing (under the lock): the services' role may lack CREATE, and an
                # up-to-date database must start without it (ops/README.md, "Database roles").
                conn.execute(text(_CREATE_TABLE))
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise StoreError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                        "migrations are forward-only: add a new one instead"
                    )
                continue
            try:
                conn.exec_driver_sql(m.sql)
            except exc.DBAPIError as e:  # the transaction rolls back as this leaves db.tx()
                reason = str(e.orig).strip().splitlines()[0]
                raise StoreError(
                    f"cannot apply migration {m.version:04d}_{m.name}: {reason}; run `ordo migrate` "
                    "with a role that may change the schema (ops/README.md, 'Database roles and grants')"
                ) from e
            conn.execute(
                text("INSERT INTO schema_migration (version, name, checksum) VALUES (:v, :n, :c)"),
                {"v": m.version, "n": m.name, "c": m.checksum},
            )
        done.append(f"{m.version:04d}_{m.name}")
    return done
