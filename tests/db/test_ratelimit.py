"""The shared rate-limit allowance (store/ratelimit.sql): grants never exceed it, shrink as it runs
out, come back when given back, and refill with time."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from store import ratelimit
from store.db import Database
from store.ratelimit import Gcra

PER_MINUTE = 12  # one request every 5 s: slow enough that the test's own time refills nothing


def _claim(db: Database, agent: uuid.UUID, want: int, give_back: int = 0) -> ratelimit.Grant:
    with db.tx() as conn:
        return ratelimit.claim(conn, agent, Gcra(PER_MINUTE), want=want, give_back=give_back)


def _age(db: Database, agent: uuid.UUID, seconds: float) -> None:
    """Move the agent's state `seconds` into the past, as if that much time had gone by."""
    with db.tx() as conn:
        conn.execute(
            text("UPDATE api_rate_limit SET tat = tat - make_interval(secs => :s) WHERE agent_id = :a"),
            {"s": seconds, "a": agent},
        )


def test_grants_add_up_to_the_allowance_and_no_more(db: Database) -> None:
    """Claiming until refused grants exactly a minute's allowance, then a refusal that names the
    wait for the next request."""
    agent = uuid.uuid4()
    grants = []
    while (grant := _claim(db, agent, want=64)).granted:
        grants.append(grant.granted)

    assert sum(grants) == PER_MINUTE
    assert 0 < grant.retry_after_s <= 5


def test_grants_shrink_as_the_allowance_runs_out(db: Database) -> None:
    """No grant takes more than a quarter of what is left (at least one), so the last requests of an
    allowance go out one at a time instead of lying idle in one process."""
    agent = uuid.uuid4()
    left, sizes = PER_MINUTE, []
    while (grant := _claim(db, agent, want=64)).granted:
        assert grant.granted <= max(1, left // 4)
        sizes.append(grant.granted)
        left -= grant.granted

    assert sizes[:3] == [3, 2, 1] and sum(sizes) == PER_MINUTE


def test_concurrent_claims_never_overdraw(db: Database) -> None:
    """Eight threads claiming at once for one agent are granted the allowance between them, exactly."""
    agent = uuid.uuid4()

    def drain() -> int:
        total = 0
        while (grant := _claim(db, agent, want=8)).granted:
            total += grant.granted
        return total

    with ThreadPoolExecutor(8) as pool:
        totals = list(pool.map(lambda _: drain(), range(8)))

    assert sum(totals) == PER_MINUTE


def test_given_back_requests_can_be_claimed_again(db: Database) -> None:
    """Requests taken and not used return to the allowance, by give_back or with the next claim."""
    agent = uuid.uuid4()
    first = _claim(db, agent, want=2).granted
    with db.tx() as conn:
        ratelimit.give_back(conn, {agent: first}, Gcra(PER_MINUTE))
    again = _claim(db, agent, want=64).granted
    after_returning = _claim(db, agent, want=1, give_back=again).granted
    total = after_returning
    while grant := _claim(db, agent, want=64).granted:
        total += grant

    assert (first, again, after_returning) == (2, 3, 1)  # 3: a quarter of a full allowance
    assert total == PER_MINUTE


def test_the_allowance_refills_with_time_and_agents_are_apart(db: Database) -> None:
    """A spent allowance admits one more request per interval that passes; another agent is
    untouched by the first one's spending."""
    spent, other = uuid.uuid4(), uuid.uuid4()
    while _claim(db, spent, want=64).granted:
        pass

    _age(db, spent, 16)  # three intervals of 5 s
    refilled = []
    while grant := _claim(db, spent, want=64).granted:
        refilled.append(grant)

    assert refilled == [1, 1, 1]
    assert _claim(db, other, want=64).granted == 3
