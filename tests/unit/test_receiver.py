"""The built-in receiver (`ordo webhook receive`, the demo's): it accepts what the reference library
signs, refuses what it should, notices duplicates and records every request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from cli.receiver import Receiver
from engine.webhook_signing import new_secret

BODY = b'{"type":"plan.ready","timestamp":"2026-11-27T05:30:00+00:00","data":{"makespan":55}}'


def _signed(
    secret: str, msg_id: str = "msg_1", at: float | None = None, body: bytes = BODY
) -> dict[str, str]:
    at = time.time() if at is None else at
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": signature}


def test_it_accepts_what_the_reference_library_signs_and_records_it(tmp_path: Path) -> None:
    secret = new_secret()
    record = tmp_path / "received.jsonl"
    receiver = Receiver([secret], record)
    status, entry = receiver.receive(_signed(secret), BODY)
    assert status == 204
    assert entry["verified"] and not entry["duplicate"]
    assert (entry["type"], entry["data"]) == ("plan.ready", {"makespan": 55})
    assert json.loads(record.read_text().splitlines()[0]) == entry


def test_it_refuses_a_wrong_secret_a_changed_body_and_an_old_timestamp() -> None:
    secret = new_secret()
    receiver = Receiver([secret])
    assert receiver.receive(_signed(new_secret()), BODY)[0] == 401
    assert receiver.receive(_signed(secret), BODY.replace(b"55", b"56"))[0] == 401
    assert receiver.receive(_signed(secret, at=time.time() - 600), BODY)[0] == 401
    assert receiver.receive({}, BODY)[0] == 401
    assert receiver.summary()["refused"] == 4 and receiver.summary()["verified"] == 0


def test_a_retry_with_the_same_webhook_id_is_a_duplicate() -> None:
    secret = new_secret()
    receiver = Receiver([secret])
    receiver.receive(_signed(secret, "msg_7"), BODY)
    status, entry = receiver.receive(_signed(secret, "msg_7"), BODY)
    assert status == 204 and entry["duplicate"]
    assert receiver.summary()["verified"] == 1 and receiver.summary()["duplicates"] == 1


def test_either_secret_verifies_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    receiver = Receiver([new, old])
    assert receiver.receive(_signed(old, "msg_a"), BODY)[0] == 204
    assert receiver.receive(_signed(new, "msg_b"), BODY)[0] == 204
