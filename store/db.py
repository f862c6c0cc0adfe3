"""The database handle: a SQLAlchemy engine over psycopg 3, and error translation at the edge."""

from __future__ import annotations

import re
import select
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg
from sqlalchemy import Connection, create_engine, event, exc
from sqlalchemy.engine import make_url

from store.errors import AlreadyExists, OrdoError, StoreError

__all__ = ["Database", "HeldConnection", "discard", "translate_errors"]

_UNIQUE_VIOLATION = "23505"


class Database:
    """A connection pool. `tx()` is one transaction; errors leave it as typed `OrdoError`s."""

    def __init__(
        self, url: str, *, pool_size: int = 5, max_overflow: int = 10, application_name: str = "ordo"
    ):
        self.url = _sqlalchemy_url(url)
        self.application_name = application_name
        self.engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"application_name": application_name},
        )
        # Instead of SQLAlchemy's pre-ping: a round trip on every checkout, a fifth of a short write's.
        event.listen(self.engine, "checkout", partial(_check_on_checkout, self.engine.dialect))

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back (and translated) when it raises."""
        with translate_errors(), self.engine.begin() as conn:
            yield conn

    def raw_connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A plain psycopg connection, for LISTEN and session-level advisory locks."""
        return psycopg.connect(self.conninfo, autocommit=autocommit, application_name=self.application_name)

    @property
    def conninfo(self) -> str:
        return libpq_url(self.url)

    def dispose(self) -> None:
        self.engine.dispose()


def _check_on_checkout(dialect: Any, dbapi_conn: psycopg.Connection[Any], _record: Any, _proxy: Any) -> None:
    """Make sure a pooled connection is alive before it is used, without a round trip when it surely
    is. A server that ends a connection (a restart, pg_terminate_backend, a timeout) says so or closes
    the socket, and either makes it readable; an idle pooled connection is otherwise sent nothing. So
    only a connection with something to read is pinged (SQLAlchemy's own ping, which reads it). A dead
    one makes the pool throw away every connection it holds and open a fresh one, as pre-ping does."""
    if dbapi_conn.closed:
        raise exc.InvalidatePoolError("the connection is closed")
    poll = select.poll()
    poll.register(dbapi_conn.fileno(), select.POLLIN)
    if not poll.poll(0):
        return
    try:
        dialect.do_ping(dbapi_conn)
    except psycopg.Error as e:
        raise exc.InvalidatePoolError(f"the connection is gone: {_first_line(e)}") from e


class HeldConnection:
    """The one connection a background loop keeps between its passes (a worker's dispatcher, group
    commit and deliverer): opened on first use, thrown away when a statement on it failed, so the
    next pass opens a fresh one instead of retrying on a broken one."""

    def __init__(self, db: Database, log: Any, *, autocommit: bool = False) -> None:
        self._db = db
        self._log = log
        self._autocommit = autocommit
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None:
            conn = self._db.engine.connect()
            self._conn = conn.execution_options(isolation_level="AUTOCOMMIT") if self._autocommit else conn
        return self._conn

    def discard(self) -> None:
        """After a failure: see `discard` below."""
        if self._conn is not None:
            discard(self._conn, self._log)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def discard(conn: Connection, log: Any) -> None:
    """Throw away a connection a loop held when a statement on it failed: invalidated, so the pool
    never hands it out again, and closed; the loop opens a fresh one on its next pass. Closing a
    broken connection may fail too, which is logged and changes nothing."""
    try:
        conn.invalidate()
        conn.close()
    except Exception as e:
        log.debug("connection_discard_failed", error=str(e))


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except OrdoError:
        raise
    except exc.IntegrityError as e:
        if getattr(e.orig, "sqlstate", None) == _UNIQUE_VIOLATION:
            raise AlreadyExists("a record with the same key already exists", details=_diag(e)) from e
        raise StoreError("the database refused the change", details=_diag(e)) from e
    except exc.DBAPIError as e:
        raise StoreError(f"database error: {_first_line(e.orig)}") from e
    except psycopg.Error as e:
        raise StoreError(f"database error: {_first_line(e)}") from e


def _diag(e: exc.DBAPIError) -> dict[str, Any]:
    diag = getattr(e.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    return {"constraint": constraint} if constraint else {}


# Where the server listens ("on socket "/path/.s.PGSQL.5432"", "at "db.internal" (10.0.0.5), port 5432")
# is for the operator's log, not for API clients: messages say "its socket" / "its address".
_LOCATION = re.compile(r'(on socket|at) "[^"]*"(?: \([^)]*\))?(?:, port \d+)?')


def _first_line(e: object) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return _LOCATION.sub(lambda m: "on its socket" if m[1] == "on socket" else "at its address", text)


def _sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise StoreError(f"DATABASE_URL must be a postgresql:// URL, not {parsed.drivername}://")


def libpq_url(url: str) -> str:
    """The same URL in the form libpq (psycopg, psql, peers in benchmarks) accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
