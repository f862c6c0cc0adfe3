"""What happens after a failed attempt: retry after an exponential backoff with jitter, or give up.

Pure: the random source is an argument, so tests can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from store.domain import DEFAULT_BACKOFF

__all__ = ["MAX_TOOL_DELAY_S", "RetryPolicy", "backoff_delay", "decide"]

# A tool's Retry-After is honoured up to a day; beyond that the far side is not coming back soon.
MAX_TOOL_DELAY_S = 86_400.0


@dataclass(frozen=True)
class RetryPolicy:
    # A task's backoff; the defaults are a task document's (store.domain.DEFAULT_BACKOFF).
    base_s: float = DEFAULT_BACKOFF["base_s"]
    cap_s: float = DEFAULT_BACKOFF["cap_s"]
    jitter: float = DEFAULT_BACKOFF["jitter"]  # fraction of the delay drawn at random and taken off

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid retry policy {self}")


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, minus up to `jitter` of it."""
    exponent = min(attempt - 1, 60)  # 2**60 already exceeds any cap; avoids float overflow
    raw = min(policy.cap_s, policy.base_s * (2.0**exponent))
    return raw * (1.0 - policy.jitter * rng.random())


def decide(
    error: dict[str, Any] | None, attempt: int, max_attempts: int, policy: RetryPolicy, rng: random.Random
) -> tuple[str, float | None]:
    """("failed", delay_s) when another attempt will be made, else ("dead", None)."""
    retryable = error is None or bool(error.get("retryable", True))
    if not retryable or attempt >= max_attempts:
        return "dead", None
    requested = None if error is None else error.get("retry_after_s")
    if requested is not None:
        return "failed", min(max(0.0, float(requested)), MAX_TOOL_DELAY_S)
    return "failed", backoff_delay(attempt, policy, rng)
