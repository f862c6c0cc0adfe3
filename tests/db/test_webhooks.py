"""Webhook deliveries end to end on a real PostgreSQL: a deliverer leases, signs and sends to a real
receiver on 127.0.0.1 that verifies every request with the reference `standardwebhooks` library."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from engine.outbound import OutboundPolicy
from engine.webhook_signing import new_secret
from store import webhooks
from store.db import Database
from store.errors import Conflict
from store.tasks import LOCAL_AGENT_ID
from tests.helpers import FAST_DELIVERY, LOCAL_LIMITS, delivering, rows, scalar, wait_for
from tests.webhook_receiver import Answer, Receiver, receiving
from workers.deliverer import EXCERPT_BYTES, Deliverer, DelivererConfig
from workers.delivery_policy import DeliveryPolicy

FAST = FAST_DELIVERY


def endpoint(
    db: Database, to: Receiver | str, events: list[str] | None = None, secret: str | None = None
) -> dict[str, Any]:
    """An endpoint of the local agent; registered with a receiver, the receiver learns its secret."""
    secret = secret or new_secret()
    if isinstance(to, Receiver):
        if secret not in to.secrets:
            to.secrets.append(secret)
        to = to.url
    with db.tx() as conn:
        return webhooks.create(
            conn, LOCAL_AGENT_ID, url=to, events=events or ["plan.ready"], description="", secret=secret
        )


def announce(db: Database, data: Any = None, event: str = "plan.ready", **kw: Any) -> list[dict[str, Any]]:
    with db.tx() as conn:
        return webhooks.announce(conn, LOCAL_AGENT_ID, event, {"n": 1} if data is None else data, **kw)


def log_of(db: Database, endpoint_id: Any) -> list[dict[str, Any]]:
    with db.tx() as conn:
        page = webhooks.deliveries(conn, endpoint_id, limit=200)
    return [webhooks.public_delivery(r) for r in page.items]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def test_nothing_is_written_when_no_endpoint_subscribes(db: Database, receiver: Receiver) -> None:
    """Announcing a topic nobody subscribes to leaves no message and no delivery behind."""
    endpoint(db, receiver, ["other.topic"])
    assert announce(db) == []
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 0
    assert scalar(db, "SELECT count(*) FROM webhook_delivery") == 0


def test_delivery_is_signed_and_verified_by_the_reference_library(db: Database, receiver: Receiver) -> None:
    """One message to two subscribed endpoints: each receives one request that the library verifies,
    with the Standard Webhooks body {type, timestamp, data}."""
    secret = new_secret()
    first = endpoint(db, receiver, secret=secret)
    second = endpoint(db, receiver.url + "/2", secret=secret)
    queued = announce(db, {"makespan": 55, "site": "Chișinău"})
    assert len(queued) == 2 and queued[0]["webhook_id"] == queued[1]["webhook_id"]
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 2)
    assert {r.headers["webhook-id"] for r in receiver.received} == {queued[0]["webhook_id"]}
    payload = receiver.received[0].payload
    assert list(payload) == ["type", "timestamp", "data"]
    assert payload["type"] == "plan.ready" and payload["data"] == {"makespan": 55, "site": "Chișinău"}
    for ep in (first, second):
        [d] = log_of(db, ep["id"])
        assert d["state"] == "succeeded" and d["attempts"] == 1
        assert d["attempt_log"][0]["status_code"] == 200 and d["attempt_log"][0]["response_excerpt"] == "ok"


def test_two_server_errors_then_success_is_one_delivery_after_three_attempts(
    db: Database, receiver: Receiver
) -> None:
    """500, 500, 200: the receiver takes in exactly one request; all three carry the same webhook-id,
    each signed anew; the log records the three attempts."""
    ep = endpoint(db, receiver)
    receiver.answer(500, 500)
    [queued] = announce(db)
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "succeeded", what="delivery recorded")
    assert len(receiver.verified()) == 3 and len(receiver.accepted()) == 1
    assert {r.webhook_id for r in receiver.received} == {queued["webhook_id"]}
    [d] = log_of(db, ep["id"])
    assert d["attempts"] == 3
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in d["attempt_log"]] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 200, "succeeded"),
    ]


def test_429_retry_after_is_honoured(db: Database, receiver: Receiver) -> None:
    """A 429 asking for 1 s is retried no sooner, though the next configured delay is 50 ms (the
    longest, 3 s, caps what a receiver may ask)."""
    ep = endpoint(db, receiver)
    receiver.answer(Answer(429, {"Retry-After": "1"}))
    announce(db)
    with delivering(db, DeliveryPolicy(retry_delays_s=(0.05, 3.0))):
        receiver.wait_for(lambda r: len(r.received) == 2, timeout=10)
    gap = receiver.received[1].at - receiver.received[0].at
    assert gap >= 1.0
    [d] = log_of(db, ep["id"])
    assert [a["status_code"] for a in d["attempt_log"]] == [429, 200]


def test_400_is_not_retried(db: Database, receiver: Receiver) -> None:
    """A 4xx other than 429 ends the delivery dead after one attempt, with the receiver's answer."""
    ep = endpoint(db, receiver)
    receiver.answer(Answer(400, body=b'{"error": "unknown type"}'))
    announce(db)
    with delivering(db):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "dead", what="dead delivery")
        time.sleep(0.3)  # several retry delays: nothing more may come
    assert len(receiver.received) == 1
    [d] = log_of(db, ep["id"])
    assert d["attempts"] == 1 and d["last_status"] == 400
    assert d["attempt_log"][0]["response_excerpt"] == '{"error": "unknown type"}'


def test_a_slow_answer_times_out_and_is_retried_and_a_long_one_is_cut_in_the_log(
    db: Database, receiver: Receiver
) -> None:
    """The first answer comes after the read timeout: WEBHOOK_TIMEOUT, retried. The second is 5,000
    bytes: the log keeps the first 1,024."""
    ep = endpoint(db, receiver)
    receiver.answer(Answer(200, delay_s=1.5), Answer(200, body=b"x" * 5000))
    announce(db)
    with delivering(db, timeout_s=0.3):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "succeeded", timeout=15, what="delivered")
    [d] = log_of(db, ep["id"])
    first, second = d["attempt_log"]
    assert (first["outcome"], first["status_code"]) == ("failed", None)
    assert first["error"]["code"] == "WEBHOOK_TIMEOUT"
    assert second["outcome"] == "succeeded" and second["response_excerpt"] == "x" * EXCERPT_BYTES


def test_retries_end_dead_and_a_redelivery_sends_the_same_webhook_id(
    db: Database, receiver: Receiver
) -> None:
    """Four 503s spend the round (three delays): dead, visible; redelivered, it arrives with the same id."""
    ep = endpoint(db, receiver)
    receiver.answer(503, 503, 503, 503)
    [queued] = announce(db)
    with delivering(db):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "dead", what="dead delivery")
        with db.tx() as conn:
            dead = webhooks.deliveries(conn, ep["id"], state="dead").items
        assert [d["id"] for d in dead] == [queued["delivery_id"]]
        with db.tx() as conn:
            again = webhooks.public_delivery(webhooks.redeliver(conn, ep["id"], queued["delivery_id"]))
        assert again["state"] == "pending"
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "succeeded", what="redelivered")
    assert [r.webhook_id for r in receiver.received] == [queued["webhook_id"]] * 5
    [d] = log_of(db, ep["id"])
    assert [a["attempt"] for a in d["attempt_log"]] == [1, 2, 3, 4, 5]


def test_a_waiting_delivery_cannot_be_redelivered(db: Database) -> None:
    ep = endpoint(db, "http://127.0.0.1:9/never")
    [queued] = announce(db)
    with db.tx() as conn, pytest.raises(Conflict, match="pending"):
        webhooks.redeliver(conn, ep["id"], queued["delivery_id"])


def test_secret_rotation_signs_with_both_secrets_during_the_overlap(db: Database, receiver: Receiver) -> None:
    """After a rotation, a receiver still on the old secret and one already on the new both verify."""
    old = new_secret()
    ep = endpoint(db, receiver, secret=old)
    new = new_secret()
    with db.tx() as conn:
        rotated = webhooks.rotate(conn, ep["id"], secret=new, overlap_s=3600)
    assert webhooks.public(rotated)["previous_secret_expires_at"] is not None
    receiver.secrets = [old, new]
    announce(db)
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
    assert receiver.received[0].verified_with == [0, 1]


def test_without_overlap_the_old_secret_stops_signing_at_once(db: Database, receiver: Receiver) -> None:
    old, new = new_secret(), new_secret()
    ep = endpoint(db, receiver, secret=old)
    with db.tx() as conn:
        webhooks.rotate(conn, ep["id"], secret=new, overlap_s=0)
    receiver.secrets = [old, new]
    announce(db)
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
    assert receiver.received[0].verified_with == [1]


def test_the_breaker_opens_holds_deliveries_and_recovers_without_losing_any(
    db: Database, receiver: Receiver
) -> None:
    """The receiver answers 500 until the breaker is open, 200 after. Three failures in a row open
    it: no delivery is leased during the cool-down (attempts in flight when it opened may still end);
    then a half-open probe succeeds, the breaker closes, and every message arrives once. Read from
    the attempt log's database clock, which a loaded machine cannot make lie."""
    policy = DeliveryPolicy(retry_delays_s=(0.05,) * 6, breaker_failures=3, breaker_cooldown_s=1.0)
    ep = endpoint(db, receiver)
    receiver.default = Answer(500)
    queued = [announce(db, {"i": i})[0] for i in range(5)]

    def shown() -> dict[str, Any]:
        with db.tx() as conn:
            return webhooks.public(webhooks.get(conn, ep["id"]))

    with delivering(db, policy, concurrency=1):
        opened = wait_for(lambda: (v := shown())["state"] == "breaker_open" and v, what="breaker open")
        receiver.default = Answer()
        assert opened["breaker"]["state"] in ("open", "half_open") and opened["breaker"]["opened_at"]
        receiver.wait_for(lambda r: len(r.accepted()) == 5, timeout=15)
        wait_for(lambda: shown()["state"] == "active", what="breaker closed")
    during_cooldown = scalar(
        db,
        "SELECT count(*) FROM webhook_attempt WHERE started_at >= CAST(:at AS timestamptz) "
        "AND started_at < CAST(:at AS timestamptz) + interval '1 s'",
        at=opened["breaker"]["opened_at"],
    )
    assert during_cooldown == 0, "deliveries were attempted while the breaker was open"
    assert sorted(r.webhook_id for r in receiver.accepted()) == sorted(q["webhook_id"] for q in queued)
    assert scalar(db, "SELECT count(*) FROM webhook_delivery WHERE state = 'succeeded'") == 5
    assert scalar(db, "SELECT count(*) FROM webhook_attempt") == len(receiver.received)
    assert shown()["breaker"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "opened_at": None,
        "next_probe_at": None,
    }


def test_a_receiver_down_for_a_while_gets_every_delivery_once_it_is_up(db: Database) -> None:
    """Nothing listens at the endpoint's address: attempts fail unreachable, the breaker opens and holds
    the rest (no attempt spent), probes keep failing. Then a receiver starts on that port: a probe
    closes the breaker and every message arrives, each taken in once, none dead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = new_secret()
    ep = endpoint(db, f"http://127.0.0.1:{port}/hook", secret=secret)
    queued = [announce(db, {"i": i})[0] for i in range(8)]
    policy = DeliveryPolicy(retry_delays_s=(0.05,) * 8, breaker_failures=3, breaker_cooldown_s=0.5)
    with delivering(db, policy, concurrency=2):
        wait_for(lambda: scalar(db, "SELECT breaker_trips FROM webhook_endpoint") >= 2, what="a failed probe")
        spent = scalar(db, "SELECT sum(attempts) FROM webhook_delivery")
        assert spent < 8 + 3, "held deliveries were attempted while the breaker was open"
        with receiving([secret], port=port) as receiver:
            receiver.wait_for(lambda r: len(r.accepted()) == 8, timeout=20)
            wait_for(
                lambda: scalar(db, "SELECT count(*) FROM webhook_delivery WHERE state = 'succeeded'") == 8,
                what="every delivery recorded",
            )
    assert sorted(r.webhook_id for r in receiver.received) == sorted(q["webhook_id"] for q in queued)
    assert scalar(db, "SELECT state FROM webhook_endpoint") == "active"
    failed = rows(db, "SELECT DISTINCT error ->> 'code' AS c FROM webhook_attempt WHERE outcome = 'failed'")
    assert [r["c"] for r in failed] == ["WEBHOOK_UNREACHABLE"]
    assert scalar(db, "SELECT count(*) FROM webhook_attempt WHERE outcome = 'dead'") == 0
    assert all(d["state"] == "succeeded" for d in log_of(db, ep["id"]))


def test_410_gone_pauses_the_endpoint_and_holds_the_rest(db: Database, receiver: Receiver) -> None:
    ep = endpoint(db, receiver)
    receiver.answer(410)
    announce(db, {"i": 1})
    with delivering(db, concurrency=1):
        wait_for(lambda: scalar(db, "SELECT state FROM webhook_endpoint") == "paused", what="paused")
        announce(db, {"i": 2})
        time.sleep(0.4)
        assert len(receiver.received) == 1
        with db.tx() as conn:
            assert webhooks.get(conn, ep["id"])["paused_reason"] == "gone"
            webhooks.update(conn, ep["id"], {"state": "active"})
        receiver.wait_for(lambda r: len(r.accepted()) == 1)


def test_an_expired_lease_is_retried_with_the_same_id_and_the_late_result_is_fenced(
    db: Database, receiver: Receiver
) -> None:
    """A delivery whose worker stopped mid-request is rescued: the abandoned attempt is recorded
    (LEASE_EXPIRED), the retry arrives with the same webhook-id, and the first worker's late result
    changes nothing."""
    ep = endpoint(db, receiver)
    [queued] = announce(db)
    client = httpx.Client(transport=LOCAL_LIMITS.outbound.transport())
    stalled = Deliverer(
        db,
        DelivererConfig(policy=FAST, timeout_s=0.1),
        client,
        log=structlog.get_logger("t"),
        worker_id="stalled",
    )
    [lease] = stalled._lease(1)  # leased, then never finished in time
    with db.tx() as conn:
        conn.exec_driver_sql("UPDATE webhook_delivery SET lease_until = now() - interval '1 s'")
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "succeeded", what="retried")
    stalled.record([(lease, stalled.send(lease))])  # the stalled worker wakes up: fenced out
    client.close()
    [d] = log_of(db, ep["id"])
    assert [(a["attempt"], (a["error"] or {}).get("code"), a["outcome"]) for a in d["attempt_log"]] == [
        (1, "LEASE_EXPIRED", "failed"),
        (2, None, "succeeded"),
    ]
    assert {r.webhook_id for r in receiver.received} == {queued["webhook_id"]}


def test_a_retried_notify_step_queues_nothing_twice(db: Database) -> None:
    endpoint(db, "http://127.0.0.1:9/x")
    first = announce(db, source_key="run:7:notify")
    again = announce(db, {"other": True}, source_key="run:7:notify")
    assert first == again
    assert scalar(db, "SELECT count(*) FROM webhook_delivery") == 1


def test_deleting_an_endpoint_removes_its_deliveries_and_log(db: Database, receiver: Receiver) -> None:
    ep = endpoint(db, receiver)
    announce(db)
    with delivering(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: scalar(db, "SELECT count(*) FROM webhook_attempt") == 1, what="attempt recorded")
    with db.tx() as conn:
        webhooks.delete(conn, ep["id"])
    assert rows(db, "SELECT * FROM webhook_delivery") == []
    assert rows(db, "SELECT * FROM webhook_attempt") == []


def test_messages_past_the_retention_are_pruned_once_every_delivery_ended(db: Database) -> None:
    """An old message whose delivery succeeded goes with its log; an old one still waiting stays."""
    ep = endpoint(db, "http://127.0.0.1:9/x")
    [done] = announce(db, {"i": 1})
    [waiting] = announce(db, {"i": 2})
    with db.tx() as conn:
        conn.exec_driver_sql("UPDATE webhook_message SET created_at = now() - interval '40 days'")
        conn.exec_driver_sql(
            f"UPDATE webhook_delivery SET state = 'succeeded' WHERE id = {done['delivery_id']}"
        )
    client = httpx.Client(transport=LOCAL_LIMITS.outbound.transport())
    pruner = Deliverer(
        db,
        DelivererConfig(policy=FAST, retention_days=30),
        client,
        log=structlog.get_logger("t"),
        worker_id="p",
    )
    assert pruner.prune_once() == 1
    client.close()
    assert [d["id"] for d in log_of(db, ep["id"])] == [waiting["delivery_id"]]


def test_a_name_resolving_to_loopback_is_refused_when_not_allowed(db: Database, receiver: Receiver) -> None:
    """`localhost` passes registration (a name is resolved only when sending), but the outbound policy
    refuses the loopback address it resolves to: no request leaves, the delivery is dead with
    OUTBOUND_REFUSED and is not retried."""
    ep = endpoint(db, receiver.url.replace("127.0.0.1", "localhost"))
    announce(db)
    with delivering(db, outbound=OutboundPolicy()):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "dead", what="refused delivery")
    assert receiver.received == []
    [d] = log_of(db, ep["id"])
    assert d["attempts"] == 1
    assert d["attempt_log"][0]["error"]["code"] == "OUTBOUND_REFUSED"
    assert "loopback" in d["attempt_log"][0]["error"]["message"]


def test_a_redirect_from_an_allowed_host_to_a_blocked_one_is_not_followed(db: Database) -> None:
    """The allowed receiver answers 307 to another address the policy does not open: the signed
    request never reaches it; the attempt is recorded as a refused redirect, not retried."""
    with receiving() as allowed, receiving() as blocked:
        allowed.answer(Answer(307, {"Location": blocked.url}))
        ep = endpoint(db, allowed)
        announce(db)
        port = allowed.url.split(":")[2].split("/")[0]
        with delivering(db, outbound=OutboundPolicy.parse(f"127.0.0.1:{port}")):
            wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "dead", what="redirect refused")
        assert len(allowed.received) == 1 and blocked.received == []
    [d] = log_of(db, ep["id"])
    assert (d["last_status"], d["attempt_log"][0]["error"]["code"]) == (307, "WEBHOOK_REDIRECT")


def test_a_delivery_that_dies_announces_nothing_of_its_own(db: Database, receiver: Receiver) -> None:
    """No feedback loop: a dead delivery is not a run, so an endpoint listening for run.dead hears
    nothing about it, and nothing new is queued."""
    ep = endpoint(db, receiver, ["plan.ready", "run.dead", "run.failed"])
    receiver.answer(400)
    announce(db)
    with delivering(db):
        wait_for(lambda: log_of(db, ep["id"])[0]["state"] == "dead", what="dead delivery")
        time.sleep(0.3)
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 1
    assert len(receiver.received) == 1
