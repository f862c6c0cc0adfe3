"""A run can only fail itself, and the worker's background loops do not die: a worker in a thread of
this process against a real database, fed poison runs, corrupt rows, database refusals and failing
loops."""

import threading
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy import text

from engine import Tool, ToolRegistry
from observability.metrics import WORKER as REGISTRY_METRICS
from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from tests.helpers import REGISTRY, add_task, lease_every_queued, rows, running_worker, scalar, wait_for
from workers import completer as completer_module
from workers import execute
from workers.completer import Completer, CompleterConfig
from workers.health import LoopHealth
from workers.listener import Listener
from workers.outcomes import Finished, Outcome, serialise
from workers.worker import Worker


def task_of(db, agent_name, payload, **fields):
    values = task_document.validate(
        {"title": agent_name, "schedule_kind": "manual", "payload": payload, **fields},
        REGISTRY,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, agent_name)
        return store_tasks.create(conn, values, agent["id"])


def enqueue(db, task, n=1, **kw):
    with db.tx() as conn:
        return store_runs.enqueue(conn, task["id"], n=n, **kw)


def final(db, run_id):
    return rows(db, "SELECT state, attempt, error FROM task_run WHERE run_id = :id AND final", id=run_id)


def all_final(db, run_ids):
    return scalar(db, "SELECT count(*) FROM task_run WHERE final AND run_id = ANY(:ids)", ids=run_ids) == len(
        run_ids
    )


def assert_loops_healthy(worker: Worker):
    report = worker.health.report()
    assert all(loop["ok"] for loop in report.values()), report


SELF_REFERENCE = {
    "pipeline": [
        {"id": "a", "uses": "echo.message", "with": {"message": "hi"}},
        {"id": "b", "uses": "echo.message", "with": {"message": "me", "data": "${steps}"}},
    ]
}


def test_a_self_referencing_run_fails_alone_and_other_agents_runs_in_its_batch_succeed(db):
    poison = task_of(db, "mallory", SELF_REFERENCE, max_retries=5)
    good = task_of(
        db, "alice", {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "ok"}}]}
    )
    (poison_run,) = enqueue(db, poison)
    good_runs = enqueue(db, good, n=200)
    with running_worker(db, concurrency=64) as worker:
        wait_for(lambda: all_final(db, [poison_run, *good_runs]), timeout=30, what="every run to end")
        assert_loops_healthy(worker)
    ((state, attempt, error),) = [tuple(r.values()) for r in final(db, poison_run)]
    assert (state, attempt, error["code"]) == ("dead", 1, "TEMPLATE_CYCLE")
    assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 200


def test_a_run_whose_queue_row_is_corrupt_is_recorded_as_a_worker_crash_and_frees_its_slot(db):
    """`params` that is not an object (written around the API) breaks the worker while it builds the
    run's context: inline and on a run thread, the attempt is recorded and the slot and lease freed."""
    inline = add_task(db, max_retries=1, backoff={"base_s": 0.05, "cap_s": 0.1, "jitter": 0})
    blocking = add_task(
        db,
        max_retries=0,
        payload={"pipeline": [{"id": "get", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/"}}]},
    )
    with db.tx() as conn:
        corrupt = [
            conn.execute(
                text(
                    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, "
                    "params, agent_id) VALUES (:t, 'manual', now(), now(), 5, :m, CAST('[1, 2]' AS jsonb), "
                    "(SELECT agent_id FROM task WHERE id = :t)) RETURNING id"
                ),
                {"t": t["id"], "m": m},
            ).scalar_one()
            for t, m in ((inline, 2), (blocking, 1))
        ]
    healthy = enqueue(db, inline, n=5)
    with running_worker(db, concurrency=2) as worker:
        wait_for(lambda: all_final(db, corrupt + healthy), timeout=30, what="every run to end")
        wait_for(lambda: worker.held.executing == 0 and not worker.held.leased(), what="slots to be free")
    for run_id in corrupt:
        attempts = rows(
            db, "SELECT state, error FROM task_run WHERE run_id = :id ORDER BY attempt", id=run_id
        )
        assert {a["error"]["code"] for a in attempts} == {"WORKER_CRASH"}
        assert attempts[-1]["state"] == "dead"
    assert len(rows(db, "SELECT 1 FROM task_run WHERE run_id = :id", id=corrupt[0])) == 2  # it was retried
    assert {final(db, r)[0]["state"] for r in healthy} == {"succeeded"}
    assert scalar(db, "SELECT count(*) FROM due_work") == 0


def test_an_expired_lease_is_rescued_and_the_rescuers_heartbeat_lives_on(db):
    """The first rescue used to kill the rescuing worker's heartbeat thread (it read a column that
    does not exist): its own leases then expired and nothing was rescued any more."""
    task = add_task(db, max_retries=2)
    (run_id,) = enqueue(db, task)
    with db.tx() as conn:  # a worker leased it and died
        conn.execute(
            text(
                "UPDATE due_work SET state = 'running', attempt = 1, lease_token = gen_random_uuid(), "
                "lease_until = now() - interval '1 second', worker_id = 'ghost', started_at = now() "
                "WHERE id = :id"
            ),
            {"id": run_id},
        )
    with running_worker(db, lease_s=3, rescue_interval_s=0.3) as worker:
        wait_for(lambda: final(db, run_id), timeout=15, what="the rescued run to finish")
        rescued_at = datetime.now(UTC)
        wait_for(
            lambda: scalar(db, "SELECT heartbeat_at FROM worker WHERE id = :id", id=worker.id) > rescued_at,
            timeout=5,
            what="a heartbeat after the rescue",
        )
        assert worker.health["rescuer"].failures == 0 and worker.health["heartbeat"].failures == 0
        assert_loops_healthy(worker)
    attempts = rows(
        db, "SELECT attempt, state, error FROM task_run WHERE run_id = :id ORDER BY attempt", id=run_id
    )
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "succeeded")]
    assert attempts[0]["error"]["code"] == "LEASE_EXPIRED" and "ghost" in attempts[0]["error"]["message"]


class _FailsFirst:
    """Wraps a callable so that its first `n` calls raise, then it works."""

    def __init__(self, func, n=2):
        self.func, self.left, self.calls = func, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("injected failure")
        return self.func(*args, **kwargs)


def _blocking(args, ctx):
    return {"done": True}


BLOCKING = Tool(
    address="test.blocking",
    description="returns at once, but runs on its own thread like any blocking tool",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    timeout_s=5,
    scopes=(),
    runs={"kind": "python", "callable": "tests:none"},
    func=_blocking,
    inline=False,
)
WITH_BLOCKING = ToolRegistry([*REGISTRY.values(), BLOCKING])


def listening(db) -> bool:
    last = f'LISTEN "{agents.AUTH_CHANNEL}"'  # store.listen subscribes to the worker's channels in order
    return bool(
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle' AND query = :last",
            last=last,
        )
    )


def test_every_background_loop_survives_an_exception_logs_it_and_recovers(db, monkeypatch):
    values = task_document.validate(
        {
            "title": "b",
            "schedule_kind": "manual",
            "payload": {"pipeline": [{"id": "b", "uses": "test.blocking"}]},
        },
        WITH_BLOCKING,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        task = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
    # Runs of a blocking tool are leased and reach the completer, whose first write fails.
    monkeypatch.setattr(completer_module, "record", _FailsFirst(completer_module.record, n=1))
    notified = Listener._notified
    failed_once = []

    def flaky_notified(self, channel, payload):
        if not failed_once:
            failed_once.append(True)
            raise RuntimeError("injected failure")
        notified(self, channel, payload)

    monkeypatch.setattr(Listener, "_notified", flaky_notified)
    with (
        structlog.testing.capture_logs() as logs,
        running_worker(db, registry=WITH_BLOCKING, lease_s=3, rescue_interval_s=0.3) as worker,
    ):
        worker.heartbeat.beat_once = _FailsFirst(worker.heartbeat.beat_once)
        worker.heartbeat.rescuer.run_once = _FailsFirst(worker.heartbeat.rescuer.run_once)
        worker.deliverer.run_once = _FailsFirst(worker.deliverer.run_once)
        worker.dispatcher._cycle = _FailsFirst(worker.dispatcher._cycle)
        # The first enqueue's NOTIFY must find the listener subscribed, or nothing reaches it: wait for
        # its session to have run its last LISTEN (its health counts as fresh from the start).
        wait_for(lambda: listening(db), what="the listener to subscribe")
        first = enqueue(db, task, n=5)
        wait_for(lambda: all_final(db, first), timeout=20, what="the first runs")
        wait_for(
            lambda: all(
                worker.health[n].failures >= 1
                for n in ("dispatcher", "heartbeat", "rescuer", "listener", "completer", "deliverer")
            ),
            timeout=10,
            what="every loop to have failed once",
        )
        later = enqueue(db, task, n=3)  # the listener reconnected and still wakes the dispatcher
        wait_for(lambda: all_final(db, later), timeout=10, what="runs after the failures")
        wait_for(
            lambda: all(loop["ok"] for loop in worker.health.report().values()), timeout=10, what="health"
        )
    events = {entry["event"] for entry in logs}
    assert {
        "heartbeat_failed",
        "rescue_failed",
        "listener_disconnected",
        "completer_failed",
        "delivery_pass_failed",
        "dispatch_failed",
    } <= events
    assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 8


def test_a_loop_that_keeps_failing_is_reported_in_the_worker_row(db):
    task = add_task(db)
    with running_worker(db, lease_s=3, rescue_interval_s=0.3) as worker:

        def broken(*_a, **_k):
            raise RuntimeError("rescue is broken")

        worker.heartbeat.rescuer.run_once = broken
        enqueue(db, task)
        loops = wait_for(
            lambda: (
                (loops := scalar(db, "SELECT loops FROM worker WHERE id = :id", id=worker.id))
                .get("rescuer", {})
                .get("ok")
                is False
                and loops
            ),
            timeout=10,
            what="the worker row to report the failing rescuer",
        )
    assert "rescue is broken" in loops["rescuer"]["error"]
    assert loops["heartbeat"]["ok"] and loops["completer"]["ok"] and loops["listener"]["ok"]


def _loop_healthy_gauge(loop):
    return REGISTRY_METRICS.get_sample_value("ordo_worker_loop_healthy", {"loop": loop})


def test_a_loop_that_stops_is_reported_in_the_worker_row_and_the_gauge(db, monkeypatch):
    """A loop thread that ends without a word (no exception to catch) is caught by its silence: its
    last pass grows old, and the worker row and ordo_worker_loop_healthy say so."""
    listening = threading.Event()
    run = Listener.run

    def stops_when_told(self, stop):
        ended = threading.Event()  # the listener's own stop, set below: its thread returns
        threading.Thread(target=lambda: (listening.wait(), ended.set()), daemon=True).start()
        run(self, ended)

    monkeypatch.setattr(Listener, "run", stops_when_told)
    with running_worker(db, lease_s=3) as worker:
        worker.health["listener"].stale_after_s = 2.0

        def listener_ok():
            loops = scalar(db, "SELECT loops FROM worker WHERE id = :id", id=worker.id) or {}
            return loops.get("listener", {}).get("ok"), loops

        wait_for(lambda: listener_ok()[0], what="the listener to report itself")
        assert _loop_healthy_gauge("listener") == 1
        listening.set()
        loops = wait_for(
            lambda: (state := listener_ok())[0] is False and state[1],
            timeout=15,
            what="the worker row to report the silent listener",
        )
        assert "no pass for" in loops["listener"]["error"]
        assert _loop_healthy_gauge("listener") == 0
        assert all(loops[name]["ok"] for name in ("heartbeat", "rescuer", "completer", "deliverer"))
    assert _loop_healthy_gauge("listener") == 1  # a stopped worker's loops no longer count


def test_a_batch_the_database_refuses_is_split_and_only_the_culprit_ends_dead(db, log):
    """PostgreSQL refuses \\u0000 in jsonb. serialise() catches that; this outcome slips past it, as
    any refusal serialise cannot foresee would."""
    task = add_task(db)
    run_ids = enqueue(db, task, n=7)
    leased = lease_every_queued(db)
    batch = []
    for run_id, token in leased:
        outcome = Outcome(
            run_id, token, 1, "succeeded", None, 0.01, [{"id": "a", "state": "ok"}], {"v": 1}, None
        )
        doc = serialise(outcome, 1 << 20).doc
        if run_id == run_ids[3]:
            doc = doc.replace(b'{"v":1}', b'{"v":"\\u0000"}')
        batch.append(Finished(run_id, "succeeded", doc))
    flushed = []
    completer = Completer(
        db,
        CompleterConfig(),
        log,
        "w",
        lambda b, recorded, lost: flushed.append((b, recorded, lost)),
        LoopHealth("completer", 10),
    )
    completer.add_many(batch)
    stop = threading.Event()
    thread = threading.Thread(target=completer.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: sum(len(b) for b, _, _ in flushed) == 7, what="the batch to be flushed")
    stop.set()
    thread.join(5)
    completer.close()
    assert set().union(*(recorded for _, recorded, _ in flushed)) == set(run_ids)
    culprit = final(db, run_ids[3])[0]
    assert culprit["state"] == "dead" and culprit["error"]["code"] == "UNRECORDABLE_OUTPUT"
    assert "database refused" in culprit["error"]["message"]
    assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 6


def test_an_inline_batch_the_database_refuses_is_retried_run_by_run(db, monkeypatch):
    """Inline runs are recorded inside their claiming transaction: a refusal rolls the whole claim
    back, and the runs come back as individual leases, so only the culprit ends dead."""
    task = add_task(db)
    run_ids = enqueue(db, task, n=20)
    culprit = run_ids[7]
    real = execute.serialise

    def poisoned(outcome, limit, task_id=None):
        finished = real(outcome, limit, task_id)
        if outcome.id == culprit:
            finished.doc = finished.doc.replace(b'"steps":[', b'"steps":[{"x":"\\u0000"},', 1)
        return finished

    monkeypatch.setattr(execute, "serialise", poisoned)
    with running_worker(db, concurrency=32):
        wait_for(lambda: all_final(db, run_ids), timeout=20, what="every run to end")
    assert final(db, culprit)[0]["error"]["code"] == "UNRECORDABLE_OUTPUT"
    succeeded = rows(
        db, "SELECT run_id, count(*) AS n FROM task_run WHERE state = 'succeeded' GROUP BY run_id"
    )
    assert len(succeeded) == 19 and {r["n"] for r in succeeded} == {1}


def test_completions_lost_to_a_database_outage_at_shutdown_are_reported_as_lost(tmp_path, log):
    db = Database(f"postgresql://postgres@/ordo?host={tmp_path / 'gone'}")
    flushed = []
    completer = Completer(
        db,
        CompleterConfig(retry_backoff_s=0.05),
        log,
        "w",
        lambda batch, recorded, lost: flushed.append((batch, recorded, lost)),
        LoopHealth("completer", 10),
    )
    outcome = Outcome(9, uuid.UUID(int=9), 1, "succeeded", None, 0.01, [], None, None)
    completer.add(serialise(outcome, 1 << 20))
    stop = threading.Event()
    stop.set()  # shutting down: the writer tries a few times, then gives up
    with structlog.testing.capture_logs() as logs:
        completer.run(stop)
    db.dispose()
    ((batch, recorded, lost),) = flushed
    assert [f.id for f in batch] == [9] and recorded == set() and lost is True
    assert "completions_lost_on_shutdown" in {e["event"] for e in logs}


_HOLD = threading.Event()


def _holding(args, ctx):
    _HOLD.wait(20)
    return {}


HOLDING = Tool(
    address="test.holding",
    description="holds its slot until the test lets go",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    timeout_s=30,
    scopes=(),
    runs={"kind": "python", "callable": "tests:none"},
    func=_holding,
    inline=False,
)


def test_the_busy_slots_gauge_counts_every_worker_of_the_process(db):
    """Two workers in one process: the gauge is their sum, not the slots of the last one built."""
    registry = ToolRegistry([*REGISTRY.values(), HOLDING])
    values = task_document.validate(
        {
            "title": "h",
            "schedule_kind": "manual",
            "payload": {"pipeline": [{"id": "h", "uses": "test.holding"}]},
        },
        registry,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        task = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
    _HOLD.clear()
    try:
        with (
            running_worker(db, registry=registry, concurrency=2) as first,
            running_worker(db, registry=registry, concurrency=2) as second,
        ):
            enqueue(db, task, n=3)
            wait_for(lambda: first.held.executing + second.held.executing == 3, what="three runs in flight")
            assert REGISTRY_METRICS.get_sample_value("ordo_worker_busy_slots") == 3
            _HOLD.set()
            wait_for(lambda: first.held.executing + second.held.executing == 0, what="the slots to free")
            assert REGISTRY_METRICS.get_sample_value("ordo_worker_busy_slots") == 0
    finally:
        _HOLD.set()
