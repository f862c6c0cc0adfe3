"""What one webhook attempt means for its delivery (retry, when, or give up) and for its endpoint's
circuit breaker. Pure: the clock and the random source are arguments.

Retry rules (Standard Webhooks' recommendations, and the issue's): a 2xx succeeds; connection errors,
timeouts, 5xx and 429 are retried after the next delay of ORDO_WEBHOOK_RETRY_S (a Retry-After on 429
or 503 is honoured, capped at the longest configured delay); 410 Gone ends the delivery and pauses
the endpoint; redirects (not followed: the URL registered is the one that gets the secret-signed
request), other 4xx and addresses the outbound policy refuses are not retried. After the last delay
the delivery is dead: visible in the log and re-sendable.

The breaker: `breaker_failures` retryable failures in a row open it; deliveries are then held (not
attempted, their attempts not spent) until a half-open probe, one delivery sent after the cool-down,
succeeds. Each failed probe doubles the cool-down, up to COOLDOWN_CAP_S.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "COOLDOWN_CAP_S",
    "Breaker",
    "DeliveryPolicy",
    "Verdict",
    "after_attempt",
    "judge",
    "retry_after_s",
]

COOLDOWN_CAP_S = 600.0
_JITTER = 0.1  # up to 10% added to each delay, so endpoints that failed together retry apart


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_delays_s: tuple[float, ...]  # Settings.webhook_retry_delays (ORDO_WEBHOOK_RETRY_S)
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.retry_delays_s or min(self.retry_delays_s) < 0:
            raise ValueError(f"invalid retry delays {self.retry_delays_s}")
        if self.breaker_failures < 1 or self.breaker_cooldown_s <= 0:
            raise ValueError(f"invalid breaker settings {self}")

    @property
    def max_attempts(self) -> int:
        """Attempts per round: the first, and one after each delay."""
        return len(self.retry_delays_s) + 1

    @property
    def longest_delay_s(self) -> float:
        return max(self.retry_delays_s)


@dataclass(frozen=True)
class Verdict:
    """What an attempt made of its delivery."""

    outcome: str  # succeeded | failed (will be retried) | dead
    delay_s: float | None  # failed: seconds until the next attempt
    counts_against_endpoint: bool  # a retryable failure: the breaker counts it
    gone: bool = False  # 410: the receiver asked never to be called again


def judge(
    status: int | None,
    error_code: str | None,
    retry_after: float | None,
    round_attempts: int,
    policy: DeliveryPolicy,
    rng: random.Random,
) -> Verdict:
    """The verdict on attempt number `round_attempts` of this round, from the response status (None
    when no response came: `error_code` says why) and its Retry-After in seconds, if any."""
    if status is not None and 200 <= status < 300:
        return Verdict("succeeded", None, False)
    if status == 410:
        return Verdict("dead", None, False, gone=True)
    retryable = status is None and error_code != "OUTBOUND_REFUSED"
    retryable = retryable or (status is not None and (status >= 500 or status == 429))
    if not retryable:
        return Verdict("dead", None, False)
    if round_attempts >= policy.max_attempts:
        return Verdict("dead", None, True)
    delay = policy.retry_delays_s[round_attempts - 1] * (1 + _JITTER * rng.random())
    if retry_after is not None and status in (429, 503):
        delay = max(delay, min(retry_after, policy.longest_delay_s))
    return Verdict("failed", delay, True)


def retry_after_s(header: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from `now`; None if absent or unreadable."""
    if not header:
        return None
    value = header.strip()
    # ASCII digits only: str.isdigit() is also true of "²" or "①", which float() refuses, and a
    # receiver (any tenant's server) must not be able to make recording an attempt raise.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True)
class Breaker:
    """An endpoint's state and circuit breaker, as stored on webhook_endpoint."""

    state: str  # active | paused | breaker_open
    paused_reason: str | None = None  # owner | gone
    consecutive_failures: int = 0
    trips: int = 0  # times in a row it opened or a probe failed: the cool-down doubles with each
    opened_at: datetime | None = None
    probe_at: datetime | None = None


def after_attempt(
    breaker: Breaker, verdict: Verdict, *, probe: bool, now: datetime, policy: DeliveryPolicy
) -> Breaker:
    """The endpoint after one recorded attempt.

    410 Gone pauses it. A success closes the breaker. A failure that counts against the endpoint adds
    to the run of failures and opens the breaker at the threshold; a failed probe keeps it open with a
    doubled cool-down; failures of attempts already in flight when it opened change nothing more.
    Other verdicts (a 4xx, a lease lost by a dead worker) leave it as it is. A paused endpoint stays
    paused: only its owner resumes it."""
    if verdict.gone:
        return replace(breaker, state="paused", paused_reason="gone", opened_at=None, probe_at=None, trips=0)
    if verdict.outcome == "succeeded":
        if breaker.state == "breaker_open":
            return Breaker("active")
        return replace(breaker, consecutive_failures=0)
    if not verdict.counts_against_endpoint:
        return breaker
    failures = breaker.consecutive_failures + 1
    if breaker.state == "breaker_open":
        if not probe:
            return replace(breaker, consecutive_failures=failures)
        cooldown = min(
            policy.breaker_cooldown_s * 2.0**breaker.trips, max(COOLDOWN_CAP_S, policy.breaker_cooldown_s)
        )
        return replace(
            breaker,
            consecutive_failures=failures,
            trips=breaker.trips + 1,
            probe_at=now + timedelta(seconds=cooldown),
        )
    if breaker.state == "active" and failures >= policy.breaker_failures:
        return Breaker(
            "breaker_open",
            consecutive_failures=failures,
            trips=1,
            opened_at=now,
            probe_at=now + timedelta(seconds=policy.breaker_cooldown_s),
        )
    return replace(breaker, consecutive_failures=failures)
