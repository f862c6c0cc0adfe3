"""Logs of a running Ordo: JSON lines, a run's lines name the run, its task and the worker; and no
secret reaches any line of any process — not the database password, not an API token (valid or
not), not a password in a URL, not a webhook secret (in a step's input, or an endpoint's while its
deliveries fail and succeed) — even when an error message quotes them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.acceptance import live as L
from tests.webhook_receiver import receiving


def _lines(tmp: Path) -> list[tuple[str, str]]:
    return [
        (path.name, line)
        for path in sorted(tmp.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if line.strip()
    ]


def test_no_secret_reaches_any_log_line_and_run_lines_name_their_run(ordo, tmp_path):
    db_password = f"pw-{uuid.uuid4().hex}"
    url_password = f"urlpw-{uuid.uuid4().hex}"
    bogus_token = "ordo_abcdefghijkl_" + uuid.uuid4().hex
    webhook_secret = "whsec_" + uuid.uuid4().hex
    # The embedded server trusts local connections, so the password is accepted and ignored: it only
    # has to be in DATABASE_URL for every process to hold it.
    ordo.env["DATABASE_URL"] = (
        make_url(ordo.env["DATABASE_URL"]).set(password=db_password).render_as_string(hide_password=False)
    )
    live = L.start(ordo)
    L.start_rest(live)

    # A step whose input is rejected: the error message quotes the rendered value, secrets and all,
    # and the worker logs that message.
    leaky = live.add_task(
        {
            "title": "leaky",
            "schedule_kind": "manual",
            "max_retries": 0,
            "payload": {
                "params": {
                    "dsn": f"postgresql://ops:{url_password}@db.example/plant",
                    "signing": webhook_secret,
                    "auth": f"Bearer {bogus_token}",
                },
                "pipeline": [
                    {
                        "id": "say",
                        "uses": "echo.message",
                        "with": {"message": ["${params.dsn}", "${params.signing}", "${params.auth}"]},
                    }
                ],
            },
        }
    )
    run_id = live.run_now(leaky)
    run = live.wait_run(run_id, ("dead",))
    assert url_password in json.dumps(run)  # the run's own record keeps what its step was given
    for token in (bogus_token, "not-even-a-token", live.token + "x"):
        assert httpx.get(f"{live.api}/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    echo_run = live.run_now(live.add_task(L.echo_task()))
    live.wait_run(echo_run, ("succeeded",))
    with receiving([webhook_secret]) as receiver:
        receiver.answer(500)  # a failed attempt is logged; the retry (5 s later) succeeds
        live.add_webhook(receiver.url, ["plant.tick"], secret=webhook_secret)
        live.publish("plant.tick", {"signing": "see the headers"})
        receiver.wait_for(lambda r: len(r.accepted()) == 1, timeout=60)
    assert httpx.get(f"{live.api}/status", headers=live.headers).status_code == 200
    live.ordo.stop_all()  # flush and close every process's log

    lines = _lines(tmp_path)
    assert any(name.startswith("worker") for name, _ in lines) and any(
        name.startswith("api") for name, _ in lines
    )
    secrets = [
        db_password,
        url_password,
        bogus_token,
        webhook_secret,
        live.token,
        live.token.rsplit("_", 1)[1],
    ]
    leaks = [(name, line) for name, line in lines for secret in secrets if secret in line]
    assert leaks == []

    records = []
    for name, line in lines:
        if name.startswith(("worker", "scheduler", "api")) and line.startswith("{"):
            records.append(json.loads(line))
    finished = [r for r in records if r.get("event") == "run_finished"]
    assert {r["run_id"] for r in finished} >= {run_id, echo_run}
    dead = next(r for r in finished if r["run_id"] == run_id)
    assert dead["state"] == "dead" and dead["error_code"] == "INPUT_INVALID"
    assert (
        "postgresql://ops:[redacted]@db.example/plant" in dead["error"]
        and "Bearer [redacted]" in dead["error"]
    )
    for record in records:
        if "run_id" in record and not isinstance(record["run_id"], list):
            assert record.get("task_id") and record.get("worker_id"), record
