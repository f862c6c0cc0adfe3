"""Retry verdicts and the circuit breaker of webhook deliveries (workers/delivery_policy.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from workers.delivery_policy import Breaker, DeliveryPolicy, Verdict, after_attempt, judge, retry_after_s

POLICY = DeliveryPolicy(retry_delays_s=(5.0, 30.0, 120.0), breaker_failures=3, breaker_cooldown_s=10.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FAILED = Verdict("failed", 5.0, True)


def _judge(
    status: int | None, code: str | None = None, retry_after: float | None = None, n: int = 1
) -> Verdict:
    return judge(status, code, retry_after, n, POLICY, random.Random(7))


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_succeeds(status: int) -> None:
    assert _judge(status) == Verdict("succeeded", None, False)


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, None), (502, None), (503, None), (None, "WEBHOOK_TIMEOUT"), (None, "WEBHOOK_UNREACHABLE")],
)
def test_server_errors_and_network_failures_are_retried_after_the_configured_delay(
    status: int | None, code: str | None
) -> None:
    """Attempt n waits delay[n-1], plus up to 10% jitter (never less)."""
    for n, delay in enumerate(POLICY.retry_delays_s, start=1):
        verdict = _judge(status, code, n=n)
        assert verdict.outcome == "failed" and verdict.counts_against_endpoint
        assert delay <= verdict.delay_s <= delay * 1.1


def test_the_attempt_after_the_last_delay_is_the_last() -> None:
    """Three delays: four attempts in a round; a failed fourth ends the delivery dead."""
    assert POLICY.max_attempts == 4
    assert _judge(500, n=3).outcome == "failed"
    assert _judge(500, n=4) == Verdict("dead", None, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_never_retried_and_do_not_trip_the_breaker(status: int) -> None:
    assert _judge(status) == Verdict("dead", None, False)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_nor_retried(status: int) -> None:
    assert _judge(status).outcome == "dead"


def test_410_gone_ends_the_delivery_and_asks_to_pause_the_endpoint() -> None:
    assert _judge(410) == Verdict("dead", None, False, gone=True)


def test_an_address_the_policy_refuses_is_not_retried() -> None:
    assert _judge(None, "OUTBOUND_REFUSED").outcome == "dead"


def test_429_retry_after_is_honoured_and_capped_at_the_longest_delay() -> None:
    """Retry-After above the scheduled delay wins; beyond the longest configured delay it is capped;
    below the scheduled delay the schedule wins."""
    assert _judge(429, retry_after=60).delay_s == 60
    assert _judge(429, retry_after=10_000).delay_s == 120
    assert 5 <= _judge(429, retry_after=1).delay_s <= 5.5
    assert _judge(503, retry_after=90).delay_s == 90


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7", NOW) == 7
    assert retry_after_s("Fri, 27 Nov 2026 12:01:00 GMT", NOW) == 60
    assert retry_after_s("soon", NOW) is None
    assert retry_after_s(None, NOW) is None


def test_consecutive_failures_open_the_breaker_at_the_threshold() -> None:
    b = Breaker("active")
    for _ in range(2):
        b = after_attempt(b, FAILED, probe=False, now=NOW, policy=POLICY)
    assert b.state == "active" and b.consecutive_failures == 2
    b = after_attempt(b, FAILED, probe=False, now=NOW, policy=POLICY)
    assert b == Breaker("breaker_open", None, 3, 1, NOW, NOW + timedelta(seconds=10))


def test_a_success_resets_the_count_and_closes_an_open_breaker() -> None:
    assert after_attempt(
        Breaker("active", None, 2), Verdict("succeeded", None, False), probe=False, now=NOW, policy=POLICY
    ) == Breaker("active")
    opened = Breaker("breaker_open", None, 3, 1, NOW, NOW)
    assert after_attempt(
        opened, Verdict("succeeded", None, False), probe=True, now=NOW, policy=POLICY
    ) == Breaker("active")


def test_each_failed_probe_doubles_the_cool_down_up_to_the_cap() -> None:
    b = Breaker("breaker_open", None, 3, 1, NOW, NOW)
    waits = []
    for _ in range(8):
        b = after_attempt(b, FAILED, probe=True, now=NOW, policy=POLICY)
        waits.append((b.probe_at - NOW).total_seconds())
    assert waits == [20, 40, 80, 160, 320, 600, 600, 600]
    assert b.state == "breaker_open" and b.opened_at == NOW


def test_failures_in_flight_when_it_opened_do_not_push_the_probe_back() -> None:
    opened = Breaker("breaker_open", None, 3, 1, NOW, NOW + timedelta(seconds=10))
    after = after_attempt(opened, FAILED, probe=False, now=NOW + timedelta(seconds=1), policy=POLICY)
    assert after.probe_at == opened.probe_at and after.consecutive_failures == 4


def test_gone_pauses_the_endpoint_and_only_its_owner_resumes_it() -> None:
    gone = after_attempt(
        Breaker("active"), Verdict("dead", None, False, gone=True), probe=False, now=NOW, policy=POLICY
    )
    assert (gone.state, gone.paused_reason) == ("paused", "gone")
    still = after_attempt(gone, Verdict("succeeded", None, False), probe=False, now=NOW, policy=POLICY)
    assert still.state == "paused"
    for _ in range(5):
        still = after_attempt(still, FAILED, probe=False, now=NOW, policy=POLICY)
    assert still.state == "paused"


def test_a_4xx_or_a_lost_lease_leaves_the_breaker_alone() -> None:
    b = Breaker("active", None, 2)
    assert after_attempt(b, Verdict("dead", None, False), probe=False, now=NOW, policy=POLICY) == b
