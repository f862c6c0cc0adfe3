"""Webhook deliveries move their metrics: attempts by outcome and their latency, and the system gauge
counts endpoints by state (an open breaker shows as breaker_open)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from observability import metrics
from store import status
from store.db import Database
from tests.db.test_webhooks import announce, delivering, endpoint, log_of
from tests.helpers import wait_for
from tests.webhook_receiver import Receiver, receiving
from workers.delivery_policy import DeliveryPolicy

FRESH = status.Freshness(worker_s=15, leader_s=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def _endpoints_by_state(db: Database) -> dict[str, int] | None:
    with db.tx() as conn:
        return status.system(conn, FRESH).webhook_endpoints


def _value(name: str, **labels: str) -> float:
    return metrics.WORKER.get_sample_value(name, labels) or 0.0


def test_attempts_are_counted_by_outcome_and_timed(db: Database, receiver: Receiver) -> None:
    before = {o: _value("ordo_webhook_deliveries_total", outcome=o) for o in ("succeeded", "failed")}
    timed = _value("ordo_webhook_delivery_duration_seconds_count")
    ep = endpoint(db, receiver)
    receiver.answer(500, 500)
    announce(db)
    with delivering(db):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "succeeded", what="the delivery")
    assert _value("ordo_webhook_deliveries_total", outcome="failed") - before["failed"] == 2
    assert _value("ordo_webhook_deliveries_total", outcome="succeeded") - before["succeeded"] == 1
    assert _value("ordo_webhook_delivery_duration_seconds_count") - timed == 3
    assert b"ordo_webhook_deliveries_total" in generate_latest(metrics.WORKER)


def test_an_open_breaker_shows_in_the_endpoint_gauge(db: Database, receiver: Receiver) -> None:
    ep = endpoint(db, receiver)
    endpoint(db, "https://quiet.example/hook", events=["something.else"])  # gets nothing
    receiver.answer(*([503] * 10))
    announce(db)
    tripping = DeliveryPolicy(retry_delays_s=(0.05,) * 5, breaker_failures=2, breaker_cooldown_s=60)
    with delivering(db, tripping):
        wait_for(
            lambda: (_endpoints_by_state(db) or {}).get("breaker_open") == 1,
            timeout=20,
            what="the breaker to open",
        )
    with db.tx() as conn:
        report = status.overview(conn, FRESH)
    assert report["webhooks"]["endpoints_by_state"] == {"active": 1, "paused": 0, "breaker_open": 1}
    assert report["webhooks"]["breakers_open"] == [str(ep["id"])]
