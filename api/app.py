"""The FastAPI application: `create_app(settings)` wires the routers, the error handlers, the body cap,
request metrics and the rate limiter; its lifespan opens the database pool, prunes expired
idempotency keys and gives back idle rate-limit grants in the background."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread
import structlog
from fastapi import FastAPI

from api import docs, errors
from api.auth import AuthListener, TokenCache
from api.console import mount_console
from api.deps import ApiState, CheckedRoute
from api.metrics import Exposition, keep_process_figures
from api.middleware import BodyLimit, Liveness, RequestTracking
from api.pool import ReadPool
from api.ratelimit import RateLimiter
from api.routes import (
    agents,
    audit,
    availability,
    events,
    health,
    resources,
    runs,
    schedules,
    status,
    tasks,
    tools,
    webhooks,
)
from engine import ToolRegistry
from engine.outbound import OutboundPolicy
from engine.webhook_endpoint import EndpointRules
from store import idempotency
from store.agents import ROUTE_SCOPES
from store.db import Database
from store.embedded import ensure_server
from store.errors import OrdoError
from store.settings import Settings
from store.status import Freshness

__all__ = ["ApiConfig", "create_app"]

_DESCRIPTION = """
Ordo's HTTP API: tasks with cron / RRULE / once / event / manual schedules and declarative
pipelines, their runs with every step's output, events, agents and tokens, the tool catalog.

Authenticate with `Authorization: Bearer <token>` (`ordo token create`, or the admin token printed
on the first `ordo up`); each operation names the scope it needs. An agent sees and runs only its own
tasks (admins see everyone's). Send bodies as JSON (`Content-Type: application/json`). Every error is
`{"code", "message", "details"}`; validation errors name the field in `details.path`. Listings page
with `cursor` (the previous page's `next_cursor`). POST /tasks, POST /events and run_now accept an
`Idempotency-Key` header. Times are ISO 8601 in UTC, except the occurrences a preview lists, which are
in the schedule's zone.
"""


@dataclass(frozen=True)
class ApiConfig:
    # Threads that run blocking route code (writes). Each uses one connection at a time, so a thread
    # never waits for a connection that another waiting thread would release. A write is mostly
    # Python (validation, SQLAlchemy) between short waits on the database, so a few threads keep
    # it busy and more only fight over the GIL: at 16 clients on 2 cores, 4 threads a process
    # served POST /tasks about 40% faster than 8, with a p99 about a third lower
    # (benchmarks/api_latency.py).
    threads: int = 4
    # One kept connection per thread: a connection opened beyond the pool is closed again when
    # returned, and opening one (a server backend) costs more than the write it serves.
    write_pool: int = 4
    read_pool: int = 8  # reads run on the event loop and queue for one of these connections
    token_cache_ttl_s: float = 60.0
    idempotency_ttl_s: float = idempotency.DEFAULT_TTL_S
    prune_every_s: float = 600.0

    def __post_init__(self) -> None:
        if (
            min(self.threads, self.write_pool, self.read_pool) < 1
            or min(self.token_cache_ttl_s, self.idempotency_ttl_s, self.prune_every_s) <= 0
        ):
            raise ValueError(f"invalid API config {self}")


def create_app(
    settings: Settings,
    db: Database | None = None,
    *,
    registry: ToolRegistry | None = None,
    config: ApiConfig | None = None,
    metrics_dir: str | None = None,
) -> FastAPI:
    """The API. With `db`, the app uses (and does not close) that database; otherwise its lifespan
    opens a pool on settings.database_url (the embedded server when unset). `metrics_dir`: the
    prometheus-client multiprocess directory this app's sibling server processes share."""
    cfg = config or ApiConfig()
    registry = registry or ToolRegistry.load(settings.tool_catalogs)
    tool_scopes = {scope for address in registry for scope in registry[address].scopes}
    log = structlog.get_logger("api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_db = db is None
        database = db or Database(
            settings.database_url or ensure_server(settings.data_dir),
            pool_size=cfg.write_pool,
            max_overflow=2,  # the idempotency pruner and /metrics scrapes, next to busy threads
            application_name="ordo-api",
        )
        reads = ReadPool(database.url, size=cfg.read_pool)
        await reads.open()
        anyio.to_thread.current_default_thread_limiter().total_tokens = cfg.threads
        tokens = TokenCache(ttl_s=cfg.token_cache_ttl_s)
        limiter = RateLimiter(settings.api_rate_limit_per_min, reads)
        app.state.ordo = ApiState(
            settings=settings,
            db=database,
            reads=reads,
            registry=registry,
            limiter=limiter,
            tokens=tokens,
            known_scopes=frozenset(ROUTE_SCOPES) | tool_scopes,
            freshness=Freshness.from_settings(settings),
            exposition=Exposition(metrics_dir),
            webhook_rules=EndpointRules(
                OutboundPolicy.parse(settings.outbound_allow), require_https=settings.webhook_require_https
            ),
        )
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_prune_loop, args=(database, cfg, stop, log), name="idempotency-pruner", daemon=True
            ),
            threading.Thread(
                target=AuthListener(database, tokens, log).run,
                args=(stop,),
                name="auth-listener",
                daemon=True,
            ),
        ]
        if metrics_dir is not None:  # several server processes: each keeps its figures current
            threads.append(
                threading.Thread(
                    target=keep_process_figures, args=(stop, log), name="process-figures", daemon=True
                )
            )
        for thread in threads:
            thread.start()
        stop_giving_back = asyncio.Event()
        giving_back = asyncio.create_task(limiter.run(stop_giving_back, log), name="rate-limit-give-back")
        # What exists now (the app, the tool catalog and its schemas, imported libraries) lives as
        # long as the process: keep it out of the collector's full passes, each of which would
        # otherwise stall every request in flight for tens of milliseconds.
        gc.freeze()
        try:
            yield
        finally:
            stop_giving_back.set()  # hands back what this process holds of every agent's allowance
            await giving_back
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
            await reads.dispose()
            if own_db:
                database.dispose()

    app = FastAPI(
        title="Ordo",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by api.docs from vendored assets
        redoc_url=None,
        openapi_tags=[
            {"name": "tasks", "description": "Create, schedule, trigger and control tasks."},
            {
                "name": "runs",
                "description": "Run history with every step's output, what is coming next; cancel and retry.",
            },
            {"name": "events", "description": "Publish events that trigger subscribed tasks."},
            {
                "name": "webhooks",
                "description": "Signed webhooks (Standard Webhooks v1) and their delivery log.",
            },
            {"name": "schedules", "description": "Preview draft schedules."},
            {
                "name": "plant",
                "description": "Resources (ISA-95), patterns, calendars, assignments, exceptions.",
            },
            {"name": "availability", "description": "Generated equipment availability and its changes."},
            {"name": "tools", "description": "The tool catalog."},
            {"name": "agents", "description": "Agents and their tokens (admin)."},
            {"name": "audit", "description": "Who changed what (admin)."},
            {"name": "health", "description": "Liveness, readiness, metrics, system status (admin)."},
        ],
    )
    app.router.route_class = CheckedRoute  # the app's own routes (docs, console) check requests too
    errors.install(app)
    # Routes are tried in order for every request: the API's first, the documentation's after them.
    for module in (tasks, runs, events, webhooks, schedules, tools, agents, audit, health, status):
        app.include_router(module.router)
    app.include_router(resources.router)
    app.include_router(availability.router)
    docs.install(app)
    mount_console(app)
    # The last added is outermost: every request gets its id first; metrics see every request,
    # including those the cap refuses.
    app.add_middleware(BodyLimit, max_body_bytes=settings.api_max_body_bytes)
    app.add_middleware(Liveness)
    app.add_middleware(RequestTracking)
    return app


def _prune_loop(
    db: Database, cfg: ApiConfig, stop: threading.Event, log: structlog.typing.FilteringBoundLogger
) -> None:
    while not stop.wait(cfg.prune_every_s):
        try:
            with db.tx() as conn:
                n = idempotency.prune(conn, ttl_s=cfg.idempotency_ttl_s)
            if n:
                log.info("idempotency_keys_pruned", count=n)
        except OrdoError as e:
            log.warning("idempotency_prune_failed", error=e.message)
