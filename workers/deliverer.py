"""The deliverer: a worker's webhook duty. It leases due deliveries (and half-open breaker probes) the
way the dispatcher leases runs, signs and sends each on a pool of sender threads, records every
attempt with its verdict (workers/delivery_policy.py) in one fenced statement per batch together with
the breakers it moves, rescues deliveries whose worker died, and hands back at shutdown.

Threads: the deliverer loop (the caller of `run`: record, rescue, lease, sleep until NOTIFY on
`ordo_webhooks`, a finished send, the next due delivery or the poll interval), a listener, and the
senders. A lease outlives the request's timeouts, so an attempt normally ends before its lease; one
that does not is retried by a rescuer with the same webhook-id (deliveries are at least once, and
receivers de-duplicate on the id), and its late result is fenced out.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import orjson
from sqlalchemy import Connection

from engine.webhook_signing import secret_key, signed_headers
from observability import metrics
from store.db import Database, HeldConnection, translate_errors
from store.domain import iso_utc
from store.errors import OrdoError
from store.listen import listen
from store.settings import Settings
from store.sql import load_queries
from store.webhooks import message_id
from workers.delivery_policy import Breaker, DeliveryPolicy, Verdict, after_attempt, judge, retry_after_s
from workers.health import LoopHealth
from workers.idle import seconds_until_due

__all__ = ["NOTIFY_CHANNEL", "Attempt", "Deliverer", "DelivererConfig", "Lease"]

Q = load_queries("workers", "deliveries.sql")
NOTIFY_CHANNEL = "ordo_webhooks"
EXCERPT_BYTES = 1024  # of each response, kept in the attempt log; the rest is never read
_USER_AGENT = "Ordo-Webhooks/1"


@dataclass(frozen=True)
class DelivererConfig:
    policy: DeliveryPolicy = field(default_factory=lambda: DeliveryPolicy(Settings().webhook_retry_delays))
    # Defaults are the settings' (store.settings.Settings, ORDO_*), defined there once.
    concurrency: int = Settings.webhook_concurrency  # requests in flight
    timeout_s: float = Settings.webhook_timeout_s  # connect, write and read timeouts of a request
    poll_s: float = Settings.poll_s
    rescue_interval_s: float = Settings.rescue_interval_s
    shutdown_grace_s: float = Settings.shutdown_grace_s
    max_probes: int = 16  # breaker probes claimed per pass
    retention_days: float = Settings.run_retention_days  # ended deliveries older than this are pruned
    prune_every_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.timeout_s <= 0 or self.poll_s <= 0 or self.rescue_interval_s <= 0:
            raise ValueError(f"invalid deliverer config {self}")
        if (
            self.shutdown_grace_s < 0
            or self.max_probes < 1
            or min(self.retention_days, self.prune_every_s) <= 0
        ):
            raise ValueError(f"invalid deliverer config {self}")

    @property
    def lease_s(self) -> float:
        # Longer than any one request can normally take (connect + write + read, each bounded).
        return 3 * self.timeout_s + 5


@dataclass(frozen=True, slots=True)
class Lease:
    """A delivery leased for one attempt, with what signing and sending it needs."""

    id: int
    token: UUID
    attempt: int
    round_attempts: int
    probe: bool
    endpoint_id: UUID
    message_id: UUID
    type: str
    data: Any
    message_created_at: datetime
    url: str
    secret: str
    previous_secret: str | None
    endpoint_healthy: bool  # active with no failure in a row, when leased
    started_at: datetime  # database clock at lease


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one request gave: a status (None when no response came; `error` says why)."""

    status: int | None
    latency_ms: float
    excerpt: str | None
    error: dict[str, Any] | None
    retry_after: str | None = None


class Deliverer:
    def __init__(
        self,
        db: Database,
        cfg: DelivererConfig,
        client: httpx.Client,
        *,
        log: Any,
        worker_id: str,
        health: LoopHealth | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.policy = cfg.policy
        self.client = client  # through the outbound policy (engine.outbound), redirects not followed
        self.health = health
        self.log = log
        self.worker_id = worker_id
        self.rng = rng or random.Random()
        self.clock = clock  # Unix seconds for webhook-timestamp
        self._lock = threading.Lock()
        self._finished: list[tuple[Lease, Attempt]] = []
        self._in_flight: dict[int, Lease] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._senders = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="webhook-send")
        self._held = HeldConnection(db, log)
        self._next_rescue = 0.0
        self._next_prune = time.monotonic() + cfg.prune_every_s * random.random()  # spread the fleet

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set, then let requests in flight finish (up to the grace period)."""
        self._stop = stop
        listener = threading.Thread(target=self._listen, name="webhook-listener", daemon=True)
        waker = threading.Thread(target=lambda: (stop.wait(), self._wake.set()), daemon=True)
        listener.start()
        waker.start()
        backoff = 0.5
        while not stop.is_set():
            self._wake.clear()
            try:
                worked = self.run_once()
                if self.health is not None:
                    self.health.ok()
                backoff = 0.5
            except Exception as e:  # a database outage, or a bug: this loop must outlive both
                if self.health is not None:
                    self.health.failed(e)
                self.log.warning("delivery_pass_failed", error=str(e).strip()[:300], exc_info=True)
                self._held.discard()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if not worked:
                self._wake.wait(seconds_until_due(self.db, Q["next_due_at"], self.cfg.poll_s))
        self._shutdown()
        listener.join(timeout=2)

    def run_once(self) -> int:
        """One pass: record finished attempts, rescue if due, lease and start what fits. Returns how
        much it did (0: nothing to do)."""
        with self._lock:
            finished, self._finished = self._finished, []
        if finished:
            self.record(finished)
        if time.monotonic() >= self._next_rescue:
            self.rescue_once()
            self._next_rescue = time.monotonic() + self.cfg.rescue_interval_s
        if time.monotonic() >= self._next_prune:
            self.prune_once()
            self._next_prune = time.monotonic() + self.cfg.prune_every_s
        leases = [] if self._stop.is_set() else self._lease(self.cfg.concurrency - len(self._in_flight))
        for lease in leases:
            with self._lock:
                self._in_flight[lease.id] = lease
            self._senders.submit(self._send_and_hand_back, lease)
        return len(finished) + len(leases)

    def _lease(self, free: int) -> list[Lease]:
        if free <= 0:
            return []
        with translate_errors():
            conn = self._held.get()
            with conn.begin():
                probes = (
                    conn.execute(
                        Q["claim_probes"], {"lease_s": self.cfg.lease_s, "n": min(free, self.cfg.max_probes)}
                    )
                    .scalars()
                    .all()
                )
                rows = (
                    conn.execute(
                        Q["lease_deliveries"],
                        {
                            "n": free - len(probes),
                            "probes": list(probes),
                            "lease_s": self.cfg.lease_s,
                            "worker_id": self.worker_id,
                        },
                    )
                    .mappings()
                    .all()
                )
        return [
            Lease(
                id=r["id"],
                token=r["lease_token"],
                attempt=r["attempts"],
                round_attempts=r["round_attempts"],
                probe=r["probe"],
                endpoint_id=r["endpoint_id"],
                message_id=r["message_id"],
                type=r["type"],
                data=r["data"],
                message_created_at=r["message_created_at"],
                url=r["url"],
                secret=r["secret"],
                previous_secret=r["previous_secret"],
                endpoint_healthy=r["endpoint_healthy"],
                started_at=r["started_at"],
            )
            for r in rows
        ]

    # -- sending ------------------------------------------------------------------------------------

    def _send_and_hand_back(self, lease: Lease) -> None:
        try:
            attempt = self.send(lease)
        except Exception as e:  # a bug in signing or sending: the attempt fails, the sender lives on
            self.log.exception("webhook_send_crashed", delivery_id=lease.id)
            attempt = Attempt(None, 0.0, None, {"code": "WEBHOOK_SEND_FAILED", "message": repr(e)[:500]})
        with self._lock:
            self._finished.append((lease, attempt))
            self._in_flight.pop(lease.id, None)
        self._wake.set()

    def send(self, lease: Lease) -> Attempt:
        """Sign and POST one attempt; never raises for anything the far side or the network does."""
        body = orjson.dumps(
            {
                "type": lease.type,
                "timestamp": iso_utc(lease.message_created_at),
                "data": lease.data,
            }
        )
        keys = [secret_key(lease.secret)]
        if lease.previous_secret:
            keys.append(secret_key(lease.previous_secret))
        headers = signed_headers(keys, message_id(lease.message_id), int(self.clock()), body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = _USER_AGENT
        started = time.monotonic()
        try:
            with self.client.stream("POST", lease.url, content=body, headers=headers) as response:
                excerpt = _read_excerpt(response)
                status = response.status_code
                retry_after = response.headers.get("retry-after")
        except httpx.TimeoutException as e:
            return self._failed(started, "WEBHOOK_TIMEOUT", f"{type(e).__name__}: no answer in time")
        except httpx.TransportError as e:
            return self._failed(started, "WEBHOOK_UNREACHABLE", f"{type(e).__name__}: {e}")
        except OrdoError as e:  # the outbound policy refused the address the host resolved to
            return self._failed(started, e.code, e.message)
        latency = _ms(started)
        error = None
        if not 200 <= status < 300:
            error = {"code": "WEBHOOK_STATUS", "message": f"the receiver answered {status}"}
            if 300 <= status < 400:
                error = {
                    "code": "WEBHOOK_REDIRECT",
                    "message": f"the receiver answered {status} (redirects are not followed: the "
                    "registered URL is the only one that gets a signed request)",
                }
        return Attempt(status, latency, excerpt, error, retry_after)

    @staticmethod
    def _failed(started: float, code: str, message: str) -> Attempt:
        return Attempt(None, _ms(started), None, {"code": code, "message": message[:500]})

    # -- recording ----------------------------------------------------------------------------------

    def record(self, finished: list[tuple[Lease, Attempt]]) -> None:
        """Write attempts with their verdicts and move the breakers they concern, in one transaction."""
        now = datetime.now(UTC)
        verdicts = []
        for lease, attempt in finished:
            code = (attempt.error or {}).get("code")
            verdict = judge(
                attempt.status,
                code,
                retry_after_s(attempt.retry_after, now),
                lease.round_attempts,
                self.policy,
                self.rng,
            )
            verdicts.append((lease, attempt, verdict))
        with self.db.tx() as conn:
            recorded = self._write_attempts(
                conn, [(lease.id, lease.token, lease.started_at, a, v) for lease, a, v in verdicts]
            )
            self._move_breakers(
                conn,
                [(lease, v) for lease, _, v in verdicts if lease.id in recorded and _may_move(lease, v)],
            )
        for lease, attempt, verdict in verdicts:
            if lease.id in recorded:
                metrics.WEBHOOK_DELIVERIES.labels(verdict.outcome).inc()
                metrics.WEBHOOK_DELIVERY_SECONDS.observe(attempt.latency_ms / 1000)
            if lease.id not in recorded:
                self.log.warning("delivery_fenced", delivery_id=lease.id, attempt=lease.attempt)
            elif verdict.outcome != "succeeded":
                self.log.warning(
                    "delivery_attempt_failed",
                    delivery_id=lease.id,
                    endpoint_id=str(lease.endpoint_id),
                    attempt=lease.attempt,
                    status=attempt.status,
                    error_code=(attempt.error or {}).get("code"),
                    outcome=verdict.outcome,
                    retry_in_s=None if verdict.delay_s is None else round(verdict.delay_s, 3),
                )

    def _write_attempts(
        self, conn: Connection, items: list[tuple[int, UUID, datetime, Attempt, Verdict]]
    ) -> set[int]:
        batch = [
            {
                "id": delivery_id,
                "token": str(token),
                "outcome": verdict.outcome,
                "delay_s": verdict.delay_s,
                "status": attempt.status,
                "latency_ms": attempt.latency_ms,
                "excerpt": attempt.excerpt,
                "error": attempt.error,
                "started_at": started_at.isoformat(),
            }
            for delivery_id, token, started_at, attempt, verdict in items
        ]
        rows = conn.execute(
            Q["record_attempts"], {"ids": [b["id"] for b in batch], "batch": orjson.dumps(batch).decode()}
        )
        return set(rows.scalars().all())

    def _move_breakers(self, conn: Connection, items: list[tuple[Lease, Verdict]]) -> None:
        """Fold recorded attempts into their endpoints' breakers (workers.delivery_policy.after_attempt)
        and write those that changed, or whose probe came back."""
        if not items:
            return
        ids = sorted({str(lease.endpoint_id) for lease, _ in items})
        rows = {r.id: r for r in conn.execute(Q["breakers"], {"ids": ids})}
        before = {
            r.id: Breaker(
                r.state,
                r.paused_reason,
                r.consecutive_failures,
                r.breaker_trips,
                r.breaker_opened_at,
                r.breaker_probe_at,
            )
            for r in rows.values()
        }
        after = dict(before)
        probed: set[UUID] = set()
        for lease, verdict in items:
            if lease.endpoint_id not in after:
                continue  # deleted meanwhile
            row = rows[lease.endpoint_id]
            after[lease.endpoint_id] = after_attempt(
                after[lease.endpoint_id], verdict, probe=lease.probe, now=row.db_now, policy=self.policy
            )
            if lease.probe:
                probed.add(lease.endpoint_id)
        batch = [
            {"id": str(endpoint_id), **asdict(breaker), "probe_done": endpoint_id in probed}
            for endpoint_id, breaker in after.items()
            if breaker != before[endpoint_id] or endpoint_id in probed
        ]
        if not batch:
            return
        conn.execute(Q["update_breakers"], {"batch": orjson.dumps(batch).decode()})
        for item in batch:
            if item["state"] != before[UUID(item["id"])].state:
                self.log.warning("webhook_endpoint_state", endpoint_id=item["id"], state=item["state"])

    # -- rescue and shutdown --------------------------------------------------------------------------

    def rescue_once(self) -> int:
        """Record the attempts of deliveries whose lease expired (their worker died or hung) and retry
        them, or end them dead when their round is spent. Safe in every worker at once."""
        with self.db.tx() as conn:
            rows = conn.execute(Q["expired_deliveries"], {"n": 1000}).mappings().all()
            if not rows:
                return 0
            lost = {
                "code": "LEASE_EXPIRED",
                "message": "the worker sending it stopped before recording the attempt",
            }
            items = [
                (
                    r["id"],
                    r["lease_token"],
                    r["started_at"],
                    Attempt(None, float(r["latency_ms"]), None, lost),
                    judge(None, "LEASE_EXPIRED", None, r["round_attempts"], self.policy, self.rng),
                )
                for r in rows
            ]
            recorded = self._write_attempts(conn, items)
        self.log.warning("delivery_leases_rescued", count=len(recorded), delivery_ids=sorted(recorded)[:50])
        return len(recorded)

    def prune_once(self) -> int:
        """Delete messages past the retention whose deliveries all ended, with their log."""
        total = 0
        while True:
            with self.db.tx() as conn:
                n = len(
                    conn.execute(
                        Q["prune_messages"], {"retention_s": self.cfg.retention_days * 86400, "n": 1000}
                    ).all()
                )
            total += n
            if n < 1000:
                break
        if total:
            self.log.info("webhook_messages_pruned", count=total)
        return total

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.cfg.shutdown_grace_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    break
            time.sleep(0.02)
        with self._lock:
            finished, self._finished = self._finished, []
            abandoned = list(self._in_flight.values())
        try:
            if finished:
                self.record(finished)
            if abandoned:
                with self.db.tx() as conn:
                    conn.execute(
                        Q["expire_deliveries"],
                        {
                            "ids": [lease.id for lease in abandoned],
                            "tokens": [lease.token for lease in abandoned],
                        },
                    )
                self.log.warning(
                    "deliveries_abandoned_at_shutdown", delivery_ids=[lease.id for lease in abandoned]
                )
        except OrdoError as e:  # their leases expire and a rescuer retries them
            self.log.warning("delivery_shutdown_write_failed", error=e.message)
        self._senders.shutdown(wait=False, cancel_futures=True)
        self._held.discard()

    # -- plumbing -----------------------------------------------------------------------------------

    def _listen(self) -> None:
        listen(
            self.db,
            [NOTIFY_CHANNEL],
            self._stop,
            self.log,
            on_notify=lambda _channel, _payload: self._wake.set(),
            on_connect=self._wake.set,  # anything queued while nobody listened went unheard
            name="webhook_listener",
        )


def _may_move(lease: Lease, verdict: Verdict) -> bool:
    """Whether an attempt can change its endpoint's breaker. A success on an endpoint that was healthy
    when leased changes nothing, so the busy path of deliveries takes no lock on the endpoint (should
    another attempt have failed in between, the success leaves that failure counted: the breaker is
    about failures in a row, and attempts in flight at once have no strict order anyway)."""
    return lease.probe or not (verdict.outcome == "succeeded" and lease.endpoint_healthy)


def _read_excerpt(response: httpx.Response) -> str | None:
    """The first EXCERPT_BYTES of the body, as text; the rest is not read (the connection is closed)."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    if not data:
        return None
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")[:EXCERPT_BYTES].replace("\x00", "\ufffd")


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
