"""`ordo up --demo`: the flagship loaded and run once at start, its plan.ready verified by the built-in
receiver; a second start loads nothing twice and runs the plan again; the demo opens exactly its
receiver's address and port on loopback."""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import httpx

from store.db import Database
from tests.acceptance.conftest import Ordo
from tests.helpers import scalar, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _verified(record: Path) -> list[dict]:
    if not record.exists():
        return []
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return [e for e in lines if e["verified"] and e["type"] == "plan.ready"]


def test_ordo_up_demo_runs_the_flagship_once_per_start_and_loads_it_once(
    ordo: Ordo, db: Database, tmp_path: Path
) -> None:
    port = _free_port()
    env = {"ORDO_DATA_DIR": str(tmp_path / "data"), "ORDO_OUTBOUND_ALLOW": ""}  # as a fresh install
    record = tmp_path / "data" / "demo-webhooks.jsonl"

    first = ordo.spawn("up", "--demo", "--port", str(port), env=env, name="up")
    got = wait_for(lambda: _verified(record), timeout=120, interval=0.2, what="a verified plan.ready")
    assert got[0]["data"]["status"] in ("optimal", "feasible")
    assert got[0]["data"]["operations"] == 23 and got[0]["duplicate"] is False

    # The API process runs with the demo's allow list: the receiver's port on loopback, nothing else.
    log = Path(first.log_file.name).read_text()  # type: ignore[attr-defined]
    token = re.search(r"(ordo_[a-z2-7]{12}_[A-Za-z0-9_-]{43})", log)
    assert token is not None, log
    receiver_url = scalar(db, "SELECT url FROM webhook_endpoint")
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    wait_for(lambda: _answers(port), timeout=60, what="the API")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as api:
        same = api.post("/webhooks", json={"url": receiver_url, "events": ["x"]})
        other = api.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["x"]})
        assert same.status_code == 201, same.text
        assert other.status_code == 422 and other.json()["code"] == "WEBHOOK_URL_REFUSED"
        assert api.delete(f"/webhooks/{same.json()['id']}").status_code == 204

    first.send_signal(signal.SIGTERM)
    assert first.wait(90) == 0

    second = ordo.spawn("up", "--demo", "--port", str(port), env=env, name="up-again")
    wait_for(lambda: len(_verified(record)) == 2, timeout=120, interval=0.2, what="a second plan.ready")
    second.send_signal(signal.SIGTERM)
    assert second.wait(90) == 0

    assert scalar(db, "SELECT count(*) FROM task WHERE title = 'Nightly plan'") == 1
    assert scalar(db, "SELECT count(*) FROM webhook_endpoint") == 1
    assert scalar(db, "SELECT count(*) FROM resource") == 10
    assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 2
    assert len({e["webhook_id"] for e in _verified(record)}) == 2


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
