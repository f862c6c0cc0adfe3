"""The per-agent rate limit holds across API processes: two `ordo api` processes on one database
admit one allowance between them, not one each."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from store import agents
from store.db import Database
from tests.acceptance.conftest import Ordo
from tests.helpers import wait_for

LIMIT = 20  # requests per minute: one more every 3 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(ordo: Ordo, name: str, limit: int = LIMIT) -> str:
    port = _free_port()
    ordo.spawn(
        "api",
        "--port",
        str(port),
        env={"ORDO_API_WORKERS": "1", "ORDO_API_RATE_LIMIT_PER_MIN": str(limit)},
        name=name,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, interval=0.1, what=f"{name} to answer")
    return url


def _token(db_url: str, name: str) -> str:
    db = Database(db_url, pool_size=1)
    try:
        with db.tx() as conn:
            agent = agents.ensure_agent(conn, name)
            _, token = agents.create_token(conn, agent["id"], ["tasks:read"], name="test")
    finally:
        db.dispose()
    return token


def test_two_api_processes_admit_one_allowance_between_them(ordo: Ordo, db_url: str) -> None:
    """Forty requests spread over two API processes, with a limit of twenty a minute: twenty are
    admitted in all (a limit per process would have admitted all forty), and the rest are 429."""
    first, second = _api(ordo, "api-a"), _api(ordo, "api-b")
    headers = {"Authorization": f"Bearer {_token(db_url, 'busy')}"}
    targets = [first, second] * 20

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool, httpx.Client(headers=headers, timeout=30) as client:
        statuses = list(pool.map(lambda url: client.get(f"{url}/tasks").status_code, targets))
    refilled = int((time.monotonic() - started) / (60 / LIMIT))

    assert set(statuses) <= {200, 429}
    assert statuses.count(200) <= LIMIT + refilled
    assert statuses.count(200) >= LIMIT - 4  # at most a grant or two left idle in the other process
    assert statuses.count(429) >= 40 - LIMIT - refilled


def test_a_busy_agent_served_from_grants_stays_within_the_allowance(ordo: Ordo, db_url: str) -> None:
    """With a limit of 240 a minute each process admits from grants of up to 12 requests (one
    database statement per grant); twice the allowance sent to both processes at once is still
    admitted only once, less at most what the two processes hold unused when the burst ends."""
    limit, max_grant = 240, 12
    first, second = _api(ordo, "api-a", limit), _api(ordo, "api-b", limit)
    headers = {"Authorization": f"Bearer {_token(db_url, 'burst')}"}
    targets = [first, second] * limit

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool, httpx.Client(headers=headers, timeout=30) as client:
        statuses = list(pool.map(lambda url: client.get(f"{url}/tasks").status_code, targets))
    refilled = int((time.monotonic() - started) / (60 / limit)) + 1

    assert set(statuses) == {200, 429}
    assert limit - 2 * max_grant <= statuses.count(200) <= limit + refilled


def test_what_one_process_took_and_did_not_use_goes_back(ordo: Ordo, db_url: str) -> None:
    """Requests one process took for an agent and did not admit return to the shared allowance, so
    after a burst at one process the other admits the rest of the minute's allowance."""
    first, second = _api(ordo, "api-a"), _api(ordo, "api-b")
    headers = {"Authorization": f"Bearer {_token(db_url, 'mover')}"}

    started = time.monotonic()
    with httpx.Client(headers=headers, timeout=30) as client:
        at_first = [client.get(f"{first}/tasks").status_code for _ in range(8)]
        time.sleep(2.5)  # longer than a grant lives: the first process gives back what it holds
        at_second = [client.get(f"{second}/tasks").status_code for _ in range(LIMIT)]
    refilled = int((time.monotonic() - started) / (60 / LIMIT))

    assert at_first == [200] * 8
    # The rest of the allowance, not less: the first process took 10 for its 8 requests.
    assert LIMIT - 8 <= at_second.count(200) <= LIMIT - 8 + refilled
    assert at_second[-1] == 429
