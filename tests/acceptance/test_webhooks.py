"""Webhooks through the real `ordo` command: the CLI registers and refuses like the API, and real
worker processes deliver, also when one is SIGKILLed in the middle of a request."""

from __future__ import annotations

import json
import signal

from engine.webhook_signing import new_secret
from store import webhooks
from store.db import Database
from store.tasks import LOCAL_AGENT_ID
from tests.acceptance.conftest import Ordo
from tests.helpers import scalar, wait_for
from tests.webhook_receiver import Answer, receiving


def test_the_cli_registers_an_endpoint_and_refuses_bad_ones(ordo: Ordo) -> None:
    """A loopback URL is refused (exit 2, naming why) unless ORDO_OUTBOUND_ALLOW lists it; a bad topic
    or secret is refused; the secret is printed once and never listed."""
    refused = ordo.run(
        "webhook", "add", "http://127.0.0.1:9/hook", "--event", "plan.ready", env={"ORDO_OUTBOUND_ALLOW": ""}
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr

    added = ordo.run(
        "webhook",
        "add",
        "http://127.0.0.1:9/hook",
        "--event",
        "plan.ready",
        "--event",
        "run.dead",
        "--json",
        env={"ORDO_OUTBOUND_ALLOW": "127.0.0.1:9"},
    )
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["secret"].startswith("whsec_") and created["events"] == ["plan.ready", "run.dead"]

    for args in (["--event", "bad topic"], ["--event", "a", "--secret", "hunter2"]):
        bad = ordo.run("webhook", "add", "https://mes.example.com/h", *args)
        assert bad.returncode == 2, bad.stdout

    listed = ordo.run("webhook", "list", "--json")
    assert [w["id"] for w in json.loads(listed.stdout)] == [created["id"]]
    assert "whsec_" not in listed.stdout

    paused = ordo.run("webhook", "pause", created["id"], "--json")
    assert json.loads(paused.stdout)["state"] == "paused"
    rotated = ordo.run("webhook", "rotate", created["id"], "--json")
    assert json.loads(rotated.stdout)["secret"] != created["secret"]
    assert ordo.run("webhook", "deliveries", created["id"]).stdout.strip() == "no deliveries"
    assert ordo.run("webhook", "show", "nope").returncode == 2


def test_a_worker_killed_mid_delivery_leads_to_a_retry_not_a_loss(ordo: Ordo, db: Database) -> None:
    """Two workers; the one sending a request is SIGKILLed while the receiver holds it. No new process
    is started: the survivor rescues the delivery when its lease expires and sends it again with the
    same webhook-id; the log shows the abandoned attempt and the successful one."""
    with receiving() as receiver:
        receiver.answer(Answer(200, delay_s=3))  # the first request hangs in the receiver
        port = receiver.url.split(":")[2].split("/")[0]
        env = {
            "ORDO_OUTBOUND_ALLOW": f"127.0.0.1:{port}",
            "ORDO_WEBHOOK_TIMEOUT_S": "2",  # lease 3 x 2 + 5 = 11 s
            "ORDO_WEBHOOK_RETRY_S": "0.1,0.1",
        }
        workers = [ordo.spawn("worker", env=env, name=f"worker{i}") for i in range(2)]
        wait_for(lambda: scalar(db, "SELECT count(*) FROM worker WHERE state = 'running'") == 2, timeout=60)
        secret = new_secret()
        receiver.secrets.append(secret)
        with db.tx() as conn:
            hook = webhooks.create(
                conn, LOCAL_AGENT_ID, url=receiver.url, events=["plan.ready"], description="", secret=secret
            )
            [queued] = webhooks.announce(conn, LOCAL_AGENT_ID, "plan.ready", {"plan": 1})

        receiver.wait_for(lambda r: len(r.received) == 1, timeout=30)
        holder = scalar(db, "SELECT worker_id FROM webhook_delivery WHERE state = 'delivering'")
        victim = next(w for w in workers if f":{w.pid}:" in holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)

        receiver.wait_for(lambda r: len(r.accepted()) == 2, timeout=40)
        wait_for(
            lambda: scalar(db, "SELECT state FROM webhook_delivery") == "succeeded",
            timeout=20,
            what="recorded",
        )
        survivor = next(w for w in workers if w is not victim)
        assert survivor.poll() is None

    assert {r.webhook_id for r in receiver.received} == {queued["webhook_id"]}
    with db.tx() as conn:
        [d] = webhooks.deliveries(conn, hook["id"]).items
    log = webhooks.public_delivery(d)["attempt_log"]
    assert [(a["attempt"], (a["error"] or {}).get("code"), a["outcome"]) for a in log] == [
        (1, "LEASE_EXPIRED", "failed"),
        (2, None, "succeeded"),
    ]
    assert f":{survivor.pid}:" in log[1]["worker_id"]
