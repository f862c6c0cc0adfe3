"""The database roles of ops/README.md work as written: the grants block from the guide, run verbatim
(with this test's role and database names), lets an owner role migrate, an app role without DDL rights
run a worker, a scheduler, the API and `ordo status`, and a KEDA role count the due runs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import structlog
from psycopg import sql
from sqlalchemy.engine import make_url

from api import create_app
from api.bootstrap import ensure_admin_token
from scheduler.service import SchedulerConfig, SchedulerService
from store import migrate as migrations
from store import runs as store_runs
from store import status
from store.db import Database
from store.errors import StoreError
from store.settings import Settings
from tests.api.conftest import serving
from tests.conftest import _admin_url, _with_db
from tests.helpers import REGISTRY, add_task, echo_payload, running_worker, scalar, wait_for
from tests.opsfiles import OPS, keda_query


def grants_block() -> str:
    guide = (OPS / "README.md").read_text()
    match = re.search(r"-- ordo grants begin\n(.*?)-- ordo grants end", guide, re.DOTALL)
    assert match, "ops/README.md lost its grants block"
    return match.group(1)


@dataclass
class Roles:
    owner: str
    app: str
    keda: str


@pytest.fixture
def roles(server_url: str) -> Iterator[tuple[Roles, str]]:
    """A fresh, empty database with the guide's roles and grants; yields the roles and its URL."""
    suffix = uuid.uuid4().hex[:8]
    names = Roles(owner=f"own_{suffix}", app=f"app_{suffix}", keda=f"keda_{suffix}")
    database = f"g_{suffix}"
    admin = _admin_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    block = grants_block()
    block = re.sub(r"\bordo_owner\b", names.owner, block)
    block = re.sub(r"\bordo_app\b", names.app, block)
    block = re.sub(r"\bordo_keda\b", names.keda, block)
    block = re.sub(r"\bDATABASE ordo\b", f"DATABASE {database}", block)
    url = _with_db(server_url, database)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(block)
        yield names, url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            for role in (names.owner, names.app, names.keda):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password="change-me").render_as_string(hide_password=False)


def test_the_guides_roles_run_ordo_without_ddl_rights_for_the_services(roles, monkeypatch):
    names, url = roles
    owner = Database(as_role(url, names.owner), pool_size=1)
    app = Database(as_role(url, names.app), pool_size=5)
    keda = Database(as_role(url, names.keda), pool_size=1)
    try:
        assert migrations.migrate(owner)  # the owner creates the schema
        with owner.tx() as conn:
            conn.exec_driver_sql(f"GRANT SELECT ON due_work TO {names.keda}")  # as the guide says

        assert migrations.migrate(app) == []  # an up-to-date schema needs no CREATE right
        with pytest.raises(StoreError), app.tx() as conn:
            conn.exec_driver_sql("CREATE TABLE not_allowed (x int)")

        # A worker and a scheduler as the app role.
        task = add_task(app)
        cron = add_task(app, schedule_kind="cron", schedule_expr="* * * * *")
        scheduler = SchedulerService(
            app, SchedulerConfig(tick_s=0.2), structlog.get_logger("test"), "grants:1"
        )
        assert scheduler.tick().errors == 0 and scheduler.is_leader
        assert scalar(app, "SELECT count(*) FROM due_work WHERE task_id = :id", id=cron["id"]) >= 1
        scheduler.step_down()
        with running_worker(app):
            settings = Settings(database_url=as_role(url, names.app), api_rate_limit_per_min=1_000_000)
            token = ensure_admin_token(app)
            headers = {"Authorization": f"Bearer {token}"}
            with serving(create_app(settings, app, registry=REGISTRY)) as base:
                run = httpx.post(f"{base}/tasks/{task['id']}/run_now", headers=headers, timeout=30)
                assert run.status_code == 202, run.text
                wait_for(
                    lambda: (
                        httpx.get(f"{base}/runs/{run.json()['id']}", headers=headers).json()["state"]
                        == "succeeded"
                    ),
                    what="the run to succeed",
                )
                created = httpx.post(
                    f"{base}/tasks",
                    json={"title": "t", "schedule_kind": "manual", "payload": echo_payload()},
                    headers={**headers, "Idempotency-Key": "k1"},
                )
                assert created.status_code == 201, created.text  # audit row and idempotency key too
                report = httpx.get(f"{base}/status", headers=headers)
                assert report.status_code == 200 and report.json()["runs_last_hour"]["succeeded"] == 1
                assert "ordo_database_up 1.0" in httpx.get(f"{base}/metrics").text
        with app.tx() as conn:
            assert status.overview(conn, status.Freshness(15, 10))["workers"]["processes"]

        # KEDA: the due runs, and nothing else.
        with app.tx() as conn:
            store_runs.enqueue(conn, task["id"], n=3)
        assert scalar(keda, keda_query()) == 3
        with pytest.raises(StoreError):
            scalar(keda, "SELECT count(*) FROM task_run")

        # A schema older than the code: the app role refuses to start, naming the migration.
        pending = migrations.Migration(9999, "later", "CREATE TABLE later_table (x int)")
        shipped = migrations.available
        monkeypatch.setattr(migrations, "available", lambda: [*shipped(), pending])
        with pytest.raises(StoreError, match=r"cannot apply migration 9999_later: .*permission denied"):
            migrations.migrate(app)
    finally:
        for db in (owner, app, keda):
            db.dispose()
