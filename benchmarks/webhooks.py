"""Webhook delivery: throughput with 1 and 2 workers, and publish-to-receipt latency at a steady rate.

    python benchmarks/webhooks.py [--deliveries 5000] [--rate 200] [--seconds 20]

A receiver on 127.0.0.1 (benchmarks/_webhook_receiver.py, its own process) verifies every request and
notes when each webhook-id first arrived. Set-up and figures:

- bare baseline: this process POSTs signed bodies to the same receiver from 16 threads over one
  keep-alive httpx client (what a worker's senders do, without the queue), for a few seconds;
- throughput: N deliveries queued at once, then drained by 1 and by 2 `ordo worker` processes;
  deliveries/s from the first attempt's start to the last attempt's end (database clock), so process
  start-up is not counted; ratio to the bare baseline;
- latency: events published with store.events.publish (what POST /events does) at a steady rate for
  some seconds while 1, then 2, workers run; each event's commit time to its receipt (same clock);
  p50/p99, and how much of the p99 is the queue (publish to lease) and the request (lease to receipt);
- the runs' fast path: record_outcomes for 500 finished runs while an endpoint exists but none listens
  to run events, against the same statement without its webhook part, alternating (median ms).

Prints a table, then one JSON line with every figure. Uses DATABASE_URL's server if set, else an
embedded server in .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import text

from benchmarks._common import (
    drop_database,
    free_port,
    fresh_database,
    load_average,
    median,
    ordo_command,
    percentile,
    process,
    server_url,
)
from engine.webhook_signing import new_secret, secret_key, signed_headers
from store import events as store_events
from store import webhooks
from store.db import Database
from store.migrate import migrate
from store.sql import load_queries
from store.tasks import LOCAL_AGENT_ID

TOPIC = "bench.tick"
SENDERS = 16


def _bare_posts_per_s(url: str, secret: str, seconds: float) -> float:
    """Signed POSTs from 16 threads over one keep-alive client: the ceiling without the queue."""
    key = secret_key(secret)
    deadline = time.monotonic() + seconds
    counts = [0] * SENDERS
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=SENDERS)) as client:

        def send(i: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                body = json.dumps({"type": TOPIC, "timestamp": "2026-01-01T00:00:00+00:00", "data": {"i": n}})
                headers = signed_headers([key], f"msg_bare{i}x{n}", int(time.time()), body.encode())
                client.post(url, content=body, headers=headers).raise_for_status()
                n += 1
            counts[i] = n

        threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - started)


def _queue(db: Database, endpoint_id: UUID, n: int) -> None:
    """N messages with one delivery each, in one transaction (the benchmark's set-up, not measured)."""
    with db.tx() as conn:
        conn.execute(
            text(
                "WITH m AS (INSERT INTO webhook_message (agent_id, type, data) "
                "           SELECT :agent, :topic, jsonb_build_object('i', i) "
                "             FROM generate_series(1, :n) AS i RETURNING id) "
                "INSERT INTO webhook_delivery (message_id, endpoint_id) SELECT id, :endpoint FROM m"
            ),
            {"agent": LOCAL_AGENT_ID, "topic": TOPIC, "n": n, "endpoint": endpoint_id},
        )


def _count(db: Database, state: str) -> int:
    with db.tx() as conn:
        return conn.execute(
            text("SELECT count(*) FROM webhook_delivery WHERE state = :s"), {"s": state}
        ).scalar_one()


def _wait_delivered(db: Database, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _count(db, "succeeded") < total:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {_count(db, 'succeeded')} of {total} deliveries succeeded in {timeout:g} s"
            )
        time.sleep(0.05)


def _span_s(db: Database) -> float:
    """First attempt's start to last attempt's end, database clock, for the attempts not yet measured."""
    with db.tx() as conn:
        return float(
            conn.execute(
                text(
                    "SELECT extract(epoch FROM max(started_at + make_interval(secs => latency_ms / 1000)) "
                    "- min(started_at)) FROM webhook_attempt"
                )
            ).scalar_one()
        )


def _reset(db: Database) -> None:
    with db.tx() as conn:
        conn.execute(text("DELETE FROM webhook_message"))


def _publish_steadily(db: Database, rate: float, seconds: float) -> dict[str, float]:
    """Publish `rate` events a second for `seconds`; returns each event's webhook-id and commit time."""
    published: dict[str, float] = {}
    interval = 1.0 / rate
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with db.tx() as conn:
            event = store_events.publish(conn, LOCAL_AGENT_ID, TOPIC, {"i": i}, subscribers_of=LOCAL_AGENT_ID)
        published[webhooks.message_id(event["id"])] = time.time()
    return published


def _wait_workers(db: Database, n: int, timeout: float = 120.0) -> None:
    """Until `n` workers run (registered, so their deliverers listen a moment later): events published
    while a worker is still starting would measure its start-up, not delivery."""
    deadline = time.monotonic() + timeout
    while True:
        with db.tx() as conn:
            running = conn.execute(text("SELECT count(*) FROM worker WHERE state = 'running'")).scalar_one()
        if running >= n:
            time.sleep(1.0)
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {running} of {n} workers started in {timeout:g} s")
        time.sleep(0.1)


def _recording_cost(db: Database, batches: int = 40, size: int = 500) -> tuple[float, float]:
    """Median ms of record_outcomes for `size` finished runs while webhooks exist but none listens to
    run events, and of the same statement without its webhook part, alternating, in one run."""
    ours = load_queries("workers", "queries.sql")["record_outcomes"].text
    head, found, _ = ours.partition("-- Webhook system events")
    assert found, "record_outcomes changed: update this benchmark"
    bare = head.rstrip().removesuffix(",") + "\nSELECT run_id FROM recorded"
    with db.tx() as conn:
        task_id = conn.execute(
            text(
                "INSERT INTO task (agent_id, title, schedule_kind, payload) "
                "VALUES (:a, 'bench', 'manual', '{}') RETURNING id"
            ),
            {"a": LOCAL_AGENT_ID},
        ).scalar_one()
    timings: dict[str, list[float]] = {"ours": [], "bare": []}
    for i in range(2 * batches):
        variant = "ours" if i % 2 == 0 else "bare"
        with db.engine.connect() as conn:
            ids = (
                conn.execute(
                    text(
                        "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, "
                        "                      max_attempts, agent_id) "
                        "SELECT :t, 'manual', now(), now(), 5, 1, (SELECT agent_id FROM task WHERE id = :t) "
                        "FROM generate_series(1, :n) RETURNING id"
                    ),
                    {"t": task_id, "n": size},
                )
                .scalars()
                .all()
            )
            batch = json.dumps(
                [
                    {
                        "id": i,
                        "token": None,
                        "attempt": 1,
                        "state": "succeeded",
                        "duration_s": 0.001,
                        "steps": [],
                        "record_bytes": 100,
                    }
                    for i in ids
                ]
            )
            started = time.perf_counter()
            conn.execute(
                text(ours if variant == "ours" else bare), {"ids": ids, "batch": batch, "worker_id": "bench"}
            ).all()
            timings[variant].append((time.perf_counter() - started) * 1000)
            conn.rollback()
    return median(timings["ours"]), median(timings["bare"])


def _first_attempts(db: Database) -> tuple[dict[str, float], dict[str, int]]:
    """Each message's first attempt start (Unix seconds, database clock), and failed attempts by error."""
    with db.tx() as conn:
        starts = conn.execute(
            text(
                "SELECT d.message_id, extract(epoch FROM min(a.started_at)) AS at "
                "FROM webhook_delivery d JOIN webhook_attempt a ON a.delivery_id = d.id GROUP BY d.message_id"
            )
        ).all()
        failed = conn.execute(
            text(
                "SELECT coalesce(error ->> 'code', status_code::text) AS why, count(*) AS n "
                "FROM webhook_attempt WHERE outcome <> 'succeeded' GROUP BY 1"
            )
        ).all()
    return {webhooks.message_id(r.message_id): float(r.at) for r in starts}, {r.why: r.n for r in failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    server = server_url()
    url = fresh_database(server, "bench_webhooks")
    db = Database(url, pool_size=4)
    figures: dict[str, float] = {}
    try:
        migrate(db)
        port, secret = free_port(), new_secret()
        receiver_url = f"http://127.0.0.1:{port}/hook"
        with db.tx() as conn:
            endpoint = webhooks.create(
                conn, LOCAL_AGENT_ID, url=receiver_url, events=[TOPIC], description="bench", secret=secret
            )
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "ORDO_LOG_LEVEL": "warning",
            "ORDO_OUTBOUND_ALLOW": f"127.0.0.1:{port}",
        }
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "received.json"
            receiver_cmd = [
                sys.executable,
                str(Path(__file__).with_name("_webhook_receiver.py")),
                str(port),
                secret,
                str(out),
            ]
            with process(receiver_cmd, env, Path(tmp) / "receiver.log") as receiver:
                _wait_listening(port)
                figures["bare_posts_s"] = round(_bare_posts_per_s(receiver_url, secret, 3.0), 1)
                print(f"bare: {figures['bare_posts_s']} signed POSTs/s", file=sys.stderr)

                for workers in (1, 2):
                    _reset(db)
                    _queue(db, endpoint["id"], args.deliveries)
                    with ExitStack() as stack:
                        for i in range(workers):
                            stack.enter_context(
                                process(ordo_command("worker"), env, Path(tmp) / f"w{workers}-{i}.log")
                            )
                        _wait_delivered(db, args.deliveries, timeout=300)
                    figures[f"deliveries_s_{workers}w"] = round(args.deliveries / _span_s(db), 1)
                    print(
                        f"{workers} worker(s): {figures[f'deliveries_s_{workers}w']} deliveries/s",
                        file=sys.stderr,
                    )

                latencies: dict[int, list[float]] = {}
                published: dict[int, dict[str, float]] = {}
                leased: dict[int, dict[str, float]] = {}
                retried: dict[int, dict[str, int]] = {}
                for workers in (1, 2):
                    _reset(db)
                    with ExitStack() as stack:
                        for i in range(workers):
                            stack.enter_context(
                                process(ordo_command("worker"), env, Path(tmp) / f"l{workers}-{i}.log")
                            )
                        _wait_workers(db, workers)
                        published[workers] = _publish_steadily(db, args.rate, args.seconds)
                        _wait_delivered(db, len(published[workers]), timeout=120)
                    leased[workers], retried[workers] = _first_attempts(db)
                receiver.terminate()
                receiver.wait(30)
            received = json.loads(out.read_text())
        ours_ms, bare_ms = _recording_cost(db)
        figures["record_outcomes_ms_500"] = round(ours_ms, 2)
        figures["record_outcomes_bare_ms_500"] = round(bare_ms, 2)
        figures["record_outcomes_ratio"] = round(ours_ms / bare_ms, 3)
        for workers, sent in published.items():
            latencies[workers] = [
                (received["received"][msg] - at) * 1000
                for msg, at in sent.items()
                if msg in received["received"]
            ]
            if len(latencies[workers]) != len(sent):
                raise SystemExit(f"{len(sent) - len(latencies[workers])} published events never arrived")
        figures["refused_by_receiver"] = received["refused"]
        for workers, values in latencies.items():
            suffix = "" if workers == 2 else "_1w"
            figures[f"p50_ms_at_{args.rate:g}_s{suffix}"] = round(median(values), 1)
            figures[f"p99_ms_at_{args.rate:g}_s{suffix}"] = round(percentile(values, 99), 1)
            # Where the time goes: publish to the first attempt's lease (queue), lease to receipt (send).
            queue = [(leased[workers][m] - at) * 1000 for m, at in published[workers].items()]
            send = [(received["received"][m] - leased[workers][m]) * 1000 for m in published[workers]]
            figures[f"p99_ms_publish_to_lease{suffix}"] = round(percentile(queue, 99), 1)
            figures[f"p99_ms_lease_to_receipt{suffix}"] = round(percentile(send, 99), 1)
            figures[f"retried{suffix}"] = sum(retried[workers].values())
            if retried[workers]:
                print(f"{workers} worker(s): retried attempts by error: {retried[workers]}", file=sys.stderr)
        figures["ratio_2w_to_bare"] = round(figures["deliveries_s_2w"] / figures["bare_posts_s"], 3)
        figures["load_average"] = round(load_average(), 2)
    finally:
        db.dispose()
        drop_database(server, url)

    rate = f"{args.rate:g}"
    print(f"{'figure':<40} value")
    for name, value in figures.items():
        print(f"{name:<40} {value}")
    met = figures[f"p99_ms_at_{rate}_s"] < 1000
    print(f"goal: p99 publish->receipt < 1000 ms at {rate}/s: {'met' if met else 'NOT met'}")
    print(json.dumps(figures))


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    main()
