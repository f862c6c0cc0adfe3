"""Webhooks through the real `ordo` command: the CLI registers and refuses like the API, and real
worker processes deliver, also when one is SIGKILLed in the middle of a request."""

from __future__ import annotations

import json

from tests.acceptance.conftest import Ordo


def test_the_cli_registers_an_endpoint_and_refuses_bad_ones(ordo: Ordo) -> None:
    """A loopback URL is refused (exit 2, naming why) unless ORDO_OUTBOUND_ALLOW lists it; a bad topic
    or secret is refused; the secret is printed once and never listed."""
    refused = ordo.run("webhook", "add", "http://127.0.0.1:9/hook", "--event", "plan.ready")
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
