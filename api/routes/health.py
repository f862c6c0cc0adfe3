"""Liveness, readiness and Prometheus metrics. No authentication: probes and scrapers call these."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import CheckedRoute, Db, Reads, State
from api.schemas import Health, Readiness
from store import status
from store.errors import OrdoError
from store.migrate import pending

__all__ = ["router"]

router = APIRouter(tags=["health"], route_class=CheckedRoute)


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
    (heartbeat, rescuer, listener, completer, deliverer, event_loop). 503 lists the failing checks."""
    fresh = state.freshness
    checks: dict[str, dict[str, Any]] = {}
    try:
        live = await reads.run(status.system, fresh)
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
        leading = live.leader_age_s <= fresh.leader_s
        checks["scheduler"] = _check(
            leading,
            f"leader {live.leader_id} heartbeat {live.leader_age_s:.1f} s ago"
            + ("" if leading else f" (older than {fresh.leader_s:g} s)"),
        )
    if live.workers_alive and live.failing_loops:
        checks["workers"] = _check(False, f"background loop failing: {live.failing_loops}")
    elif live.workers_alive:
        checks["workers"] = _check(True, f"{live.workers_alive} worker(s) with {live.worker_slots} slot(s)")
    else:
        last = "never" if live.worker_age_s is None else f"{live.worker_age_s:.1f} s ago"
        checks["workers"] = _check(
            False, f"no worker heartbeat in the last {fresh.worker_s:g} s (last: {last})"
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
async def metrics(reads: Reads, state: State) -> Response:
    """Prometheus metrics: the API's request counts and latencies (all its server processes), plus
    the system gauges PostgreSQL computes at each scrape: runs due and their lag by priority band,
    leased runs, live and lost workers, the scheduler leader's heartbeat age, webhook endpoints by
    state. `ordo_database_up` is 0 when the database could not be read."""
    try:
        system = await reads.run(status.system, state.freshness)
    except OrdoError:
        system = None
    return Response(state.exposition.render(system), media_type=CONTENT_TYPE_LATEST)


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def _readiness(checks: dict[str, dict[str, Any]]) -> Any:
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return body if ok else JSONResponse(body, status_code=503)
