"""Liveness, readiness and Prometheus metrics. No authentication: probes and scrapers call these."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Connection

from api.deps import Db, Reads, State
from api.metrics import scrape
from api.schemas import Health, Readiness
from store import status
from store.errors import OrdoError
from store.migrate import pending

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Any:
    """Liveness: the process answers. No database round trip."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A check failed; `checks` says which and why."}},
)
async def ready(db: Db, reads: Reads, state: State) -> Any:
    """Readiness: the database answers, migrations are current, a scheduler leader and at least one
    worker have sent a heartbeat recently, and no such worker reports a failing background loop
    (heartbeat, rescuer, listener, completer). 503 lists the failing checks."""
    cfg = state.settings
    leader_fresh_s = max(10.0, 5 * cfg.scheduler_tick_s)
    worker_fresh_s = max(15.0, cfg.lease_s)
    checks: dict[str, dict[str, Any]] = {}
    try:
        live = await reads.run(_ping_and_liveness, worker_fresh_s)
        checks["database"] = _check(True, "reachable")
    except OrdoError as e:
        checks["database"] = _check(False, e.message)
        for name in ("migrations", "scheduler", "workers"):
            checks[name] = _check(False, "unknown: the database is unreachable")
        return _readiness(checks)
    try:
        todo = await run_in_threadpool(pending, db)
        checks["migrations"] = _check(
            not todo,
            "current" if not todo else "pending: " + ", ".join(f"{m.version:04d}_{m.name}" for m in todo),
        )
    except OrdoError as e:
        checks["migrations"] = _check(False, e.message)
    if live.leader_age_s is None:
        checks["scheduler"] = _check(False, "no scheduler has ever led; start `ordo scheduler` or `ordo up`")
    else:
        fresh = live.leader_age_s <= leader_fresh_s
        checks["scheduler"] = _check(
            fresh,
            f"leader {live.leader_id} heartbeat {live.leader_age_s:.1f} s ago"
            + ("" if fresh else f" (older than {leader_fresh_s:g} s)"),
        )
    if live.workers_fresh and live.failing_loops:
        checks["workers"] = _check(False, f"background loop failing: {live.failing_loops}")
    elif live.workers_fresh:
        checks["workers"] = _check(True, f"{live.workers_fresh} worker(s) with {live.worker_slots} slot(s)")
    else:
        last = "never" if live.worker_age_s is None else f"{live.worker_age_s:.1f} s ago"
        checks["workers"] = _check(
            False, f"no worker heartbeat in the last {worker_fresh_s:g} s (last: {last})"
        )
    return _readiness(checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format.",
        }
    },
)
def metrics(request: Request, db: Db) -> Response:
    """Prometheus metrics: this API process's request counts and latencies, plus queue depth, live
    workers and the scheduler leader's heartbeat age read from the database at scrape time."""
    return Response(scrape(db), media_type=CONTENT_TYPE_LATEST)


def _ping_and_liveness(conn: Connection, worker_fresh_s: float) -> status.Liveness:
    status.ping(conn)
    return status.liveness(conn, worker_fresh_s=worker_fresh_s)


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def _readiness(checks: dict[str, dict[str, Any]]) -> Any:
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return body if ok else JSONResponse(body, status_code=503)
