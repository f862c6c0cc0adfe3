"""Backoff after failures: exponential, capped, jittered; dead when attempts run out."""

import random

from workers.retry import RetryPolicy, backoff_delay, decide

POLICY = RetryPolicy(base_s=2, cap_s=60, jitter=0.2)


def test_delays_grow_exponentially_up_to_the_cap_and_jitter_only_shortens():
    rng = random.Random(1)
    for attempt, raw in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (20, 60), (500, 60)]:
        delay = backoff_delay(attempt, POLICY, rng)
        assert raw * 0.8 <= delay <= raw


def test_jitter_spreads_retries_of_the_same_attempt():
    rng = random.Random(7)
    assert len({round(backoff_delay(3, POLICY, rng), 6) for _ in range(20)}) > 10


def test_a_retryable_failure_with_attempts_left_is_retried():
    assert decide({"retryable": True}, 1, 3, POLICY, random.Random(0))[0] == "failed"


def test_the_last_attempt_or_a_permanent_failure_is_dead():
    assert decide({"retryable": True}, 3, 3, POLICY, random.Random(0)) == ("dead", None)
    assert decide({"retryable": False}, 1, 3, POLICY, random.Random(0)) == ("dead", None)


def test_a_tools_retry_after_is_honoured():
    assert decide({"retryable": True, "retry_after_s": 42}, 1, 3, POLICY, random.Random(0)) == (
        "failed",
        42.0,
    )
