-- Leasing SQL: claim, lease, renew, finish, hand back, rescue. The only statements that take or
-- change a run being executed anywhere in Ordo. Every write after a lease is fenced by
-- (id, lease_token, state = 'running'); a claim is fenced by its transaction's row locks.

-- claim_batch --
-- Lock up to :n due, unkeyed runs for the calling transaction: highest priority first, then earliest
-- run_at. Claiming writes nothing but the row locks. The worker then, in the same transaction, either
-- runs a run whose pipeline is inline (microseconds) and records it (finish_claimed), or turns it into
-- a lease to run outside the transaction (lease_claimed). If the worker dies first, the transaction
-- rolls back and the runs are simply due again. One LATERAL scan per priority level reads only due
-- rows of due_work_ready_idx (priority, run_at, id), so future occurrences never cost a scan; SKIP
-- LOCKED lets workers pass each other; the outer LIMIT stops before lower priorities once :n rows are
-- locked. `attempt` is the attempt about to be made.
SELECT w.id, w.task_id, t.version AS task_version, t.status AS task_status, w.attempt + 1 AS attempt,
       w.max_attempts, CAST(NULL AS uuid) AS lease_token, w.scheduled_for, w.origin, w.event_id, w.params,
       now() AS started_at
  FROM generate_series(9, 1, -1) AS p(priority)
 CROSS JOIN LATERAL (
       SELECT id, task_id, attempt, max_attempts, scheduled_for, origin, event_id, params
         FROM due_work
        WHERE priority = p.priority
          AND state IN ('queued', 'failed')
          AND concurrency_key IS NULL
          AND run_at <= coalesce(CAST(:now AS timestamptz), now())
        ORDER BY run_at, id
        LIMIT :n
          FOR UPDATE SKIP LOCKED) AS w
  JOIN task t ON t.id = w.task_id
 LIMIT :n;

-- finish_claimed --
-- Record runs finished inside the claiming transaction (inline pipelines). The rows are still locked
-- by this transaction, so nobody else can have touched them: no fencing is needed, and no lease was
-- ever written. A run to retry stays in the queue as failed; a run that ended leaves it; every
-- attempt gets its task_run row. The batch arrives as one JSON array.
WITH outcome AS (
    SELECT *
      FROM jsonb_to_recordset(CAST(:batch AS jsonb))
           AS o(id bigint, state text, retry_in_s double precision, duration_s double precision,
                steps jsonb, output jsonb, error jsonb)),
retried AS (
    UPDATE due_work d
       SET state = 'failed',
           attempt = d.attempt + 1,
           run_at = now() + make_interval(secs => o.retry_in_s),
           last_error = o.error,
           worker_id = :worker_id,
           started_at = now()
      FROM outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))  -- a primary-key probe whatever the statistics say
       AND d.id = o.id AND o.state = 'failed'
    RETURNING d.id, d.attempt, d.task_id, d.origin, d.scheduled_for, d.created_at, d.priority,
              d.max_attempts, d.event_id),
ended AS (
    DELETE FROM due_work d
     USING outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))
       AND d.id = o.id AND o.state <> 'failed'
    RETURNING d.id, d.attempt + 1 AS attempt, d.task_id, d.origin, d.scheduled_for, d.created_at, d.priority,
              d.max_attempts, d.event_id),
changed AS (
    SELECT * FROM retried
    UNION ALL
    SELECT * FROM ended)
INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      event_id, state, final, worker_id, started_at, finished_at, steps, output, error)
SELECT c.id, c.attempt, c.task_id, c.origin, c.scheduled_for, c.created_at, c.priority, c.max_attempts,
       c.event_id, o.state, o.state <> 'failed', :worker_id, now(),
       now() + make_interval(secs => o.duration_s), o.steps, o.output, o.error
  FROM changed c
  JOIN outcome o ON o.id = c.id
RETURNING run_id;

-- lease_claimed --
-- Turn claimed runs into leases, for runs the worker executes outside the claiming transaction (their
-- pipelines call blocking tools). From here on every write is fenced by (id, lease_token).
UPDATE due_work d
   SET state = 'running',
       attempt = d.attempt + 1,
       lease_token = gen_random_uuid(),
       lease_until = now() + make_interval(secs => :lease_s),
       worker_id = :worker_id,
       started_at = now()
 WHERE d.id = ANY(CAST(:ids AS bigint[]))
RETURNING d.id, d.lease_token;

-- keys_ready --
-- Concurrency keys with due work (due_work_ready_keyed_idx), for the keyed lease pass.
SELECT DISTINCT concurrency_key
  FROM due_work
 WHERE state IN ('queued', 'failed')
   AND concurrency_key IS NOT NULL
   AND run_at <= coalesce(CAST(:now AS timestamptz), now())
 LIMIT :m;

-- lock_key --
-- Serialise leasing of one concurrency key until the transaction ends. Keys are locked in sorted
-- order by the caller, so two workers cannot deadlock.
SELECT pg_advisory_xact_lock(hashtextextended(:key, 7420002));

-- lease_keyed --
-- Claim due runs of one concurrency key while fewer than its limit are running. The caller holds the
-- key's advisory lock (lock_key) in this transaction and this statement takes a fresh snapshot, so
-- the running count includes every lease committed by the previous holder of the lock.
WITH running AS (
    SELECT count(*) AS n
      FROM due_work
     WHERE state = 'running' AND concurrency_key = :key),
lim AS (
    SELECT min(concurrency_limit) AS k
      FROM due_work
     WHERE state IN ('queued', 'failed') AND concurrency_key = :key),
picked AS (
    SELECT id, task_id
      FROM due_work
     WHERE concurrency_key = :key
       AND state IN ('queued', 'failed')
       AND run_at <= coalesce(CAST(:now AS timestamptz), now())
     ORDER BY priority DESC, run_at, id
     LIMIT greatest(0, least(CAST(:n AS bigint), (SELECT k FROM lim) - (SELECT n FROM running)))
       FOR UPDATE SKIP LOCKED)
UPDATE due_work d
   SET state = 'running',
       attempt = d.attempt + 1,
       lease_token = gen_random_uuid(),
       lease_until = now() + make_interval(secs => :lease_s),
       worker_id = :worker_id,
       started_at = now()
  FROM picked
  JOIN task t ON t.id = picked.task_id
 WHERE d.id = picked.id
RETURNING d.id, d.task_id, t.version AS task_version, t.status AS task_status, d.attempt, d.max_attempts,
          d.lease_token, d.scheduled_for, d.origin, d.event_id, d.params, d.started_at;

-- next_due_at --
-- When the earliest waiting run becomes due, so an idle worker sleeps exactly until then.
-- Per-priority LATERAL probes keep this on the ready indexes.
SELECT least(
    (SELECT min(m.run_at)
       FROM generate_series(1, 9) AS p(priority)
      CROSS JOIN LATERAL (
            SELECT run_at FROM due_work
             WHERE priority = p.priority AND state IN ('queued', 'failed') AND concurrency_key IS NULL
             ORDER BY run_at LIMIT 1) AS m),
    (SELECT min(run_at) FROM due_work WHERE state IN ('queued', 'failed') AND concurrency_key IS NOT NULL)
) AS next_run_at, now() AS db_now;

-- finish_many --
-- Record finished attempts in one statement. Fenced: only rows still leased under the same token
-- change, so a worker whose lease expired (and was rescued) cannot overwrite the new holder's state;
-- exactly the rows that changed get their task_run row. A run that will be retried stays queued as
-- failed; a run that ended leaves the queue. finished_at is started_at (database clock, set at lease)
-- plus the duration the worker measured, so worker clock skew cannot reorder history.
-- The batch arrives as one JSON array: one value to send and parse, instead of eight arrays whose
-- text form escapes every quote of every step record.
WITH outcome AS (
    SELECT *
      FROM jsonb_to_recordset(CAST(:batch AS jsonb))
           AS o(id bigint, token uuid, state text, retry_in_s double precision, duration_s double precision,
                steps jsonb, output jsonb, error jsonb)),
retried AS (
    UPDATE due_work d
       SET state = 'failed',
           run_at = now() + make_interval(secs => o.retry_in_s),
           lease_token = NULL,
           lease_until = NULL,
           last_error = o.error
      FROM outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))  -- a primary-key probe whatever the statistics say
       AND d.id = o.id AND d.lease_token = o.token AND d.state = 'running' AND o.state = 'failed'
    RETURNING d.*),
ended AS (
    DELETE FROM due_work d
     USING outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))
       AND d.id = o.id AND d.lease_token = o.token AND d.state = 'running' AND o.state <> 'failed'
    RETURNING d.*),
changed AS (
    SELECT * FROM retried
    UNION ALL
    SELECT * FROM ended)
INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      event_id, state, final, worker_id, started_at, finished_at, steps, output, error)
SELECT c.id, c.attempt, c.task_id, c.origin, c.scheduled_for, c.created_at, c.priority, c.max_attempts,
       c.event_id, o.state, o.state <> 'failed', c.worker_id, c.started_at,
       c.started_at + make_interval(secs => o.duration_s), o.steps, o.output, o.error
  FROM changed c
  JOIN outcome o ON o.id = c.id
RETURNING run_id;

-- renew_leases --
-- Heartbeat: extend the leases this worker still holds. Rows it lost (rescued) do not come back, and
-- cancel requests ride along so running pipelines can stop at the next step boundary.
UPDATE due_work d
   SET lease_until = now() + make_interval(secs => :lease_s)
  FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS uuid[])) AS l(id, token)
 WHERE d.id = ANY(CAST(:ids AS bigint[]))
   AND d.id = l.id AND d.lease_token = l.token AND d.state = 'running'
RETURNING d.id, d.cancel_requested;

-- release_unstarted --
-- Shutdown: hand back leases of runs this worker will not start. No attempt was made, so the attempt
-- counter goes back and the run is immediately due again.
UPDATE due_work d
   SET state = CASE WHEN d.attempt > 1 THEN 'failed' ELSE 'queued' END,
       attempt = d.attempt - 1,
       lease_token = NULL,
       lease_until = NULL,
       worker_id = NULL,
       run_at = now()
  FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS uuid[])) AS l(id, token)
 WHERE d.id = ANY(CAST(:ids AS bigint[]))
   AND d.id = l.id AND d.lease_token = l.token AND d.state = 'running'
RETURNING d.id;

-- rescue_expired --
-- Return expired leases (their worker died or stopped renewing) to the queue, or end the run as dead
-- when no attempts remain; record the abandoned attempt in task_run. Oldest expiries first, in
-- batches; SKIP LOCKED steps around a worker renewing or finishing the same row right now.
WITH expired AS (
    SELECT id, attempt >= max_attempts AS exhausted
      FROM due_work
     WHERE state = 'running' AND lease_until < coalesce(CAST(:now AS timestamptz), now())
     ORDER BY lease_until
     LIMIT :n
       FOR UPDATE SKIP LOCKED),
retried AS (
    UPDATE due_work d
       SET state = 'failed', run_at = now(), lease_token = NULL, lease_until = NULL,
           last_error = jsonb_build_object(
               'code', 'LEASE_EXPIRED',
               'message', 'worker ' || coalesce(d.worker_id, '?') || ' stopped renewing its lease; attempt abandoned',
               'retryable', true)
      FROM expired e
     WHERE d.id = e.id AND NOT e.exhausted
    RETURNING d.*),
ended AS (
    DELETE FROM due_work d
     USING expired e
     WHERE d.id = e.id AND e.exhausted
    RETURNING d.*),
changed AS (
    SELECT *, 'failed' AS new_state FROM retried
    UNION ALL
    SELECT *, 'dead' AS new_state FROM ended)
INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      event_id, state, final, worker_id, started_at, finished_at, error)
SELECT id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
       event_id, new_state, new_state = 'dead', worker_id, started_at, greatest(now(), started_at),
       jsonb_build_object(
           'code', 'LEASE_EXPIRED',
           'message', 'worker ' || coalesce(worker_id, '?') || ' stopped renewing its lease; attempt abandoned',
           'retryable', true)
  FROM changed
RETURNING run_id, task_id, attempt, state;

-- task_definitions --
-- What a worker needs to run a task's pipeline; cached by (id, version).
SELECT id, version, status, title, timezone, payload, timeout_s, agent_id,
       backoff_base_s, backoff_cap_s, backoff_jitter
  FROM task
 WHERE id = ANY(CAST(:ids AS uuid[]));

-- events_by_id --
-- Event payloads for runs an event triggered.
SELECT id, topic, payload, created_at
  FROM event
 WHERE id = ANY(CAST(:ids AS uuid[]));

-- register_worker --
INSERT INTO worker (id, hostname, pid, concurrency)
VALUES (:id, :hostname, :pid, :concurrency)
ON CONFLICT (id) DO UPDATE
   SET state = 'running', started_at = now(), heartbeat_at = now(), stopped_at = NULL,
       concurrency = EXCLUDED.concurrency;

-- worker_heartbeat --
UPDATE worker SET heartbeat_at = now(), state = :state WHERE id = :id;

-- worker_stopped --
UPDATE worker SET state = 'stopped', stopped_at = now(), heartbeat_at = now() WHERE id = :id;

-- expire_leases --
-- Shutdown after the grace period: end the leases of runs still executing so that the next rescue
-- (in any worker) records the abandoned attempt and retries the run, instead of waiting for expiry.
UPDATE due_work d
   SET lease_until = now() - interval '1 millisecond'
  FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS uuid[])) AS l(id, token)
 WHERE d.id = ANY(CAST(:ids AS bigint[]))
   AND d.id = l.id AND d.lease_token = l.token AND d.state = 'running';
