"""Whatever a tenant puts in a task may fail that run, never a worker, a claimed batch, a
background loop, or another tenant's runs. Each test feeds one poison (a template, a tool input, a
tool output, a receiver's answer) to a real worker on a real PostgreSQL, next to another agent's
ordinary work, on each path a run can take (inline in the claiming transaction, awaited on the
event loop, on a thread of its own)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.webhook_signing import new_secret
from scheduler import task_document
from store import agents, webhooks
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, lease_every_queued, rows, running_worker, scalar, wait_for
from tests.webhook_receiver import Answer, receiving
from workers.deliverer import DelivererConfig
from workers.delivery_policy import DeliveryPolicy

SCOPES = ["tools:http", "events:publish"]


def agent(db, name):
    with db.tx() as conn:
        row = agents.ensure_agent(conn, name)
        agents.create_token(conn, row["id"], SCOPES)
    return row


def task_of(db, owner, payload, **fields):
    values = task_document.validate(
        {"title": owner["name"], "schedule_kind": "manual", "payload": payload, **fields},
        REGISTRY,
        now=datetime.now(UTC),
        scopes=SCOPES,
    )
    with db.tx() as conn:
        return store_tasks.create(conn, values, owner["id"])


def enqueue(db, task, n=1):
    with db.tx() as conn:
        return store_runs.enqueue(conn, task["id"], n=n)


def finals(db, run_ids):
    return {
        r["run_id"]: r
        for r in rows(
            db,
            "SELECT run_id, state, attempt, error, output FROM task_run WHERE final AND run_id = ANY(:ids)",
            ids=list(run_ids),
        )
    }


def attempts(db, run_id):
    return rows(
        db, "SELECT attempt, state, error FROM task_run WHERE run_id = :id ORDER BY attempt", id=run_id
    )


def assert_loops_healthy(worker):
    report = worker.health.report()
    assert all(loop["ok"] for loop in report.values()), report


# -- the neighbour's pipelines, one per path ---------------------------------------------------------


def path_steps(path: str, url: str) -> list[dict[str, Any]]:
    """Steps that put a run on `path`: inline (claimed and recorded in one transaction), loop (awaited
    on the worker's event loop: an http.request), thread (a blocking tool: event.publish)."""
    if path == "inline":
        return []
    if path == "loop":
        return [{"id": "ping", "uses": "http.request", "with": {"url": url, "method": "POST", "json": {}}}]
    return [{"id": "ping", "uses": "event.publish", "with": {"topic": "nobody.listens", "payload": {}}}]


def run_next_to_neighbours(db, receiver, path, poisons, *, neighbours=30, max_retries=0):
    """One run of mallory's per poison (name -> steps) and `neighbours` ordinary runs of alice's, all on
    the same path, one worker; once every run ended, checks alice's runs all succeeded, the loops are
    healthy and the worker still takes new work; returns each poison run's attempts by name."""
    mallory, alice = agent(db, "mallory"), agent(db, "alice")
    poison_runs = {}
    for name, steps in poisons.items():
        task = task_of(
            db, mallory, {"pipeline": path_steps(path, receiver.url) + steps}, max_retries=max_retries
        )
        (poison_runs[name],) = enqueue(db, task)
    good = task_of(
        db,
        alice,
        {
            "pipeline": [
                *path_steps(path, receiver.url),
                {"id": "ok", "uses": "echo.message", "with": {"message": "ok"}},
            ]
        },
    )
    good_runs = enqueue(db, good, n=neighbours)
    every = [*poison_runs.values(), *good_runs]
    with running_worker(db, concurrency=16) as worker:
        wait_for(lambda: len(finals(db, every)) == len(every), timeout=60, what="every run to end")
        assert_loops_healthy(worker)
        # The worker still takes new work after the poisons.
        later = enqueue(db, good, n=3)
        wait_for(lambda: len(finals(db, later)) == 3, timeout=20, what="new work to be done")
        assert_loops_healthy(worker)
        ended = finals(db, [*good_runs, *later])
        assert {r["state"] for r in ended.values()} == {"succeeded"}, ended
    return {name: attempts(db, run_id) for name, run_id in poison_runs.items()}


@pytest.fixture
def receiver():
    with receiving() as r:
        yield r


PATHS = ["inline", "loop", "thread"]

POISONS = {
    # 2^40 elements if it were let run: stopped at MAX_EVALUATION_WORK, on whichever thread evaluates it
    "doubling_expression": [
        {
            "id": "p",
            "uses": "transform.jmespath",
            "with": {"expression": "[`1`]" + " | [@, @][]" * 40, "data": {}},
        }
    ],
    # JMESPath JSON literals decode escapes: a template can make any character PostgreSQL refuses.
    "nul_output": [{"id": "p", "uses": "echo.message", "with": {"message": '${`"a\\u0000b"`}'}}],
    "surrogate_output": [{"id": "p", "uses": "echo.message", "with": {"message": '${`"\\ud800"`}'}}],
    "nan_output": [
        {"id": "p", "uses": "echo.message", "with": {"message": "m", "data": "${sum([`1e400`, `-1e400`])}"}}
    ],
    "inf_output": [{"id": "p", "uses": "echo.message", "with": {"message": "m", "data": "${`1e400`}"}}],
    "bigint_output": [
        {
            "id": "p",
            "uses": "echo.message",
            "with": {"message": "m", "data": "${`123456789012345678901234567890`}"},
        }
    ],
    "u64_output": [
        {"id": "p", "uses": "echo.message", "with": {"message": "m", "data": "${`18446744073709551615`}"}}
    ],
    "nul_in_template_error": [
        {"id": "p", "uses": "echo.message", "with": {"message": '${abs(`"a\\u0000"`)}'}}
    ],
    "surrogate_in_template_error": [
        {"id": "p", "uses": "echo.message", "with": {"message": '${abs(`"\\ud800"`)}'}}
    ],
    "nul_in_expression_error": [
        {"id": "p", "uses": "transform.jmespath", "with": {"expression": "abs(@)", "data": '${`"\\u0000"`}'}}
    ],
    "surrogate_in_expression_error": [
        {"id": "p", "uses": "transform.jmespath", "with": {"expression": "abs(@)", "data": '${`"\\ud800"`}'}}
    ],
    "nul_in_transform_expression": [
        {"id": "p", "uses": "transform.jmespath", "with": {"expression": '${`"\\u0000"`}', "data": 1}}
    ],
    "surrogate_in_transform_expression": [
        {"id": "p", "uses": "transform.jmespath", "with": {"expression": '${`"\\ud800"`}', "data": 1}}
    ],
    "nul_in_schema_error": [{"id": "p", "uses": "echo.message", "with": {"message": '${[`"\\u0000"`]}'}}],
    "surrogate_in_schema_error": [
        {"id": "p", "uses": "echo.message", "with": {"message": '${[`"\\ud800"`]}'}}
    ],
    "deep_output": [
        {
            "id": "p",
            "uses": "echo.message",
            "with": {"message": "m", "data": "${" + "[" * 150 + "`1`" + "]" * 150 + "}"},
        }
    ],
    "if_raises": [{"id": "p", "uses": "echo.message", "if": "${abs('x')}", "with": {"message": "m"}}],
    "nul_event_payload": [
        {"id": "p", "uses": "event.publish", "with": {"topic": "t", "payload": '${`"\\u0000"`}'}}
    ],
    "surrogate_event_payload": [
        {"id": "p", "uses": "event.publish", "with": {"topic": "t", "payload": '${`"\\ud800"`}'}}
    ],
}


# What each poison must end as: (state, error code); retried never, whatever max_retries says, since
# the same task would fail the same way again. A WORKER_CRASH or TOOL_CRASHED here is a
# misclassification: the run is retried, and logged as a crash of the worker or of a tool.
EXPECTED = {
    "doubling_expression": ("dead", "EXPRESSION_FAILED"),
    "nul_output": ("dead", "UNRECORDABLE_OUTPUT"),
    "surrogate_output": ("dead", "UNRECORDABLE_OUTPUT"),
    "nan_output": ("succeeded", None),  # recorded as null
    "inf_output": ("succeeded", None),  # recorded as null
    "bigint_output": ("dead", "INPUT_INVALID"),
    "u64_output": ("succeeded", None),
    "nul_in_template_error": ("dead", "UNRECORDABLE_OUTPUT"),
    "surrogate_in_template_error": ("dead", "UNRECORDABLE_OUTPUT"),
    "nul_in_expression_error": ("dead", "UNRECORDABLE_OUTPUT"),
    "surrogate_in_expression_error": ("dead", "UNRECORDABLE_OUTPUT"),
    "nul_in_transform_expression": ("dead", "INPUT_INVALID"),
    "surrogate_in_transform_expression": ("dead", "INPUT_INVALID"),
    "nul_in_schema_error": ("dead", "INPUT_INVALID"),
    "surrogate_in_schema_error": ("dead", "INPUT_INVALID"),
    "deep_output": ("dead", "TEMPLATE_TOO_DEEP"),
    "if_raises": ("dead", "TEMPLATE_ERROR"),
    "nul_event_payload": ("dead", "PAYLOAD_INVALID"),
    "surrogate_event_payload": ("dead", "PAYLOAD_INVALID"),
}


@pytest.mark.parametrize("path", PATHS)
def test_poison_runs_fail_alone(db, receiver, path):
    """Every poison at once, each a run of its own, claimed together with another agent's runs: each
    ends as EXPECTED in one attempt (retried never, whatever max_retries says), the others succeed."""
    tries = run_next_to_neighbours(db, receiver, path, POISONS, max_retries=2)
    got = {
        name: [(a["state"], (a["error"] or {}).get("code")) for a in attempts]
        for name, attempts in tries.items()
    }
    assert got == {name: [expected] for name, expected in EXPECTED.items()}
    for name, attempts in tries.items():
        if EXPECTED[name][1] is not None:
            assert attempts[-1]["error"]["retryable"] is False, (name, attempts[-1]["error"])


# -- webhook receivers are tenants' servers too ------------------------------------------------------


def endpoint_of(db, owner, receiver, events):
    secret = new_secret()
    receiver.secrets.append(secret)
    with db.tx() as conn:
        return webhooks.create(
            conn, owner["id"], url=receiver.url, events=events, description="", secret=secret
        )


def delivery_log(db, endpoint_id):
    return rows(
        db,
        "SELECT d.id, d.state, d.attempts, "
        "       (SELECT count(*) FROM webhook_attempt a WHERE a.delivery_id = d.id) AS logged, "
        "       (SELECT count(*) FROM webhook_attempt a "
        "         WHERE a.delivery_id = d.id AND a.outcome <> 'succeeded') "
        "         AS failed_attempts "
        "  FROM webhook_delivery d WHERE d.endpoint_id = :e ORDER BY d.id",
        e=endpoint_id,
    )


def test_a_receivers_retry_after_in_unicode_digits_loses_no_other_tenants_deliveries(db):
    """Mallory's receiver answers 200 with `Retry-After: ²` (a byte 0xB2, read as latin-1: U+00B2 SUPERSCRIPT
    TWO, for which str.isdigit() is true and float() refuses). Alice's deliveries finished in the same
    pass must be recorded once, sent once, and count nothing against her endpoint; Mallory's own
    delivery is recorded (its answer was a 200); the deliverer loop stays healthy."""
    mallory, alice = agent(db, "mallory"), agent(db, "alice")
    with receiving() as bad, receiving() as good:
        # Every answer takes as long, so attempts finish together and are recorded in the same passes.
        bad.default = Answer(200, {"Retry-After": "\u00b2"}, delay_s=0.5)
        good.default = Answer(200, delay_s=0.5)
        bad_ep = endpoint_of(db, mallory, bad, ["plan.ready"])
        good_ep = endpoint_of(db, alice, good, ["plan.ready"])
        with db.tx() as conn:
            webhooks.announce(conn, mallory["id"], "plan.ready", {"n": 0})
            for i in range(7):
                webhooks.announce(conn, alice["id"], "plan.ready", {"n": i})
        cfg = DelivererConfig(
            policy=DeliveryPolicy(retry_delays_s=(0.05, 0.05, 0.05), breaker_failures=50),
            concurrency=8,
            timeout_s=1,
            rescue_interval_s=0.2,
        )
        with running_worker(db, deliveries=cfg) as worker:
            try:
                wait_for(
                    lambda: (
                        all(d["state"] in ("succeeded", "dead") for d in delivery_log(db, good_ep["id"]))
                        and all(d["state"] in ("succeeded", "dead") for d in delivery_log(db, bad_ep["id"]))
                    ),
                    timeout=30,
                    what="every delivery to end",
                )
            finally:
                health = worker.health.report()
                print("deliverer health:", health["deliverer"])
                print("alice:", delivery_log(db, good_ep["id"]), "requests:", len(good.received))
                print("mallory:", delivery_log(db, bad_ep["id"]), "requests:", len(bad.received))
            assert health["deliverer"]["ok"], health
        assert len(good.received) == 7, "alice's receiver got duplicate requests"
        assert [
            (d["state"], d["attempts"], d["logged"], d["failed_attempts"])
            for d in delivery_log(db, good_ep["id"])
        ] == [("succeeded", 1, 1, 0)] * 7
        assert [(d["state"], d["attempts"]) for d in delivery_log(db, bad_ep["id"])] == [("succeeded", 1)]


# -- outcomes each within the limits, together past what one statement can carry ---------------------

# A 1,000-character string, a list of 100 of them (~100 kB), and a step whose output lists it 98
# times: ~9.8 MB as JSON, under ORDO_STEP_OUTPUT_MAX_BYTES (10 MiB); four of them make a record of
# ~39 MB, under the record limit (4 x 10 MiB). Shared parts cost the worker almost no memory.
_BLOCK = {"rows": ["x" * 1000] * 100}
_LARGE_STEP = "${[" + ", ".join(["params.rows"] * 98) + "]}"
LARGE_BUT_ALLOWED = {
    "params": _BLOCK,
    "pipeline": [
        {"id": f"s{i}", "uses": "echo.message", "with": {"message": "m", "data": _LARGE_STEP}}
        for i in range(4)
    ],
}


@pytest.mark.slow  # 1.25 GB of records: about 35 s and several GB of memory
def test_runs_whose_records_are_each_within_the_limit_are_recorded_together(db):
    """32 of Mallory's inline runs, each with a ~39 MB record (every step and the record within the
    documented limits), are claimed in one batch: recorded together they make a ~1.25 GB statement,
    more than PostgreSQL accepts in one message (1 GB). Each run must be recorded, and Alice's run,
    queued after them, must be done."""
    mallory, alice = agent(db, "mallory"), agent(db, "alice")
    big = task_of(db, mallory, LARGE_BUT_ALLOWED, max_retries=0)
    good = task_of(db, alice, {"pipeline": [{"id": "ok", "uses": "echo.message", "with": {"message": "ok"}}]})
    big_runs = enqueue(db, big, n=32)
    time.sleep(0.01)
    (good_run,) = enqueue(db, good)
    with running_worker(db, concurrency=32) as worker:
        try:
            wait_for(lambda: len(finals(db, [good_run])) == 1, timeout=60, what="alice's run to end")
            wait_for(lambda: len(finals(db, big_runs)) == 32, timeout=60, what="mallory's runs to end")
        finally:
            print("recorded:", scalar(db, "SELECT count(*) FROM task_run"), worker.health.report())
    assert finals(db, [good_run])[good_run]["state"] == "succeeded"
    assert {r["state"] for r in finals(db, big_runs).values()} == {"succeeded"}


def test_the_completer_writes_no_batch_larger_than_the_batch_byte_bound(db, log, monkeypatch):
    """The same bound on the completer's path (leased runs finishing together): 12 finished outcomes of
    ~1 MB with a bound of 3 MB are written as statements of at most 3 MB, and every one is recorded."""

    from workers import outcomes
    from workers.completer import Completer, CompleterConfig
    from workers.health import LoopHealth
    from workers.outcomes import Outcome, serialise

    bound = 3 * 1024 * 1024
    monkeypatch.setattr(outcomes, "BATCH_MAX_BYTES", bound, raising=False)
    sizes = []
    real = outcomes.record

    def recording(conn, batch, worker_id):
        sizes.append(sum(len(f.doc) for f in batch))
        return real(conn, batch, worker_id)

    monkeypatch.setattr("workers.completer.record", recording)
    owner = agent(db, "alice")
    task = task_of(db, owner, {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "m"}}]})
    run_ids = enqueue(db, task, n=12)
    leased = lease_every_queued(db)
    batch = [
        serialise(Outcome(i, token, 1, "succeeded", None, 0.01, [], {"v": "x" * 1_000_000}, None), 1 << 30)
        for i, token in leased
    ]
    flushed = []
    completer = Completer(
        db, CompleterConfig(), log, "w", lambda b, rec, lost: flushed.append(rec), LoopHealth("completer", 10)
    )
    completer.add_many(batch)
    stop = threading.Event()
    thread = threading.Thread(target=completer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(set().union(*flushed)) == 12, timeout=20, what="every outcome to be recorded")
    finally:
        stop.set()
        thread.join(5)
        completer.close()
    assert set().union(*flushed) == set(run_ids)
    assert sizes and max(sizes) <= bound, sizes
