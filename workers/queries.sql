-- Leasing SQL: claim, lease, renew, finish, hand back, rescue. The only statements that take or
-- change a run being executed anywhere in Ordo. Every write after a lease is fenced by
-- (id, lease_token, state = 'running'); a claim is fenced by its transaction's row locks.

-- claim_batch --
-- Lock up to :n due, unkeyed runs for the calling transaction: highest priority first, then earliest
-- run_at. Claiming writes nothing but the row locks. The worker then, in the same transaction, either
-- runs a run whose pipeline is inline (microseconds) and records it (record_outcomes), or turns it into
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
-- Concurrency keys with due work (due_work_ready_keyed_idx), for the keyed lease pass. A key is its
-- owner's: agents that pick the same name neither share nor hold back each other's limit.
SELECT DISTINCT concurrency_key, agent_id
  FROM due_work
 WHERE state IN ('queued', 'failed')
   AND concurrency_key IS NOT NULL
   AND run_at <= coalesce(CAST(:now AS timestamptz), now())
 LIMIT :m;

-- lock_key --
-- Serialise leasing of one owner's concurrency key until the transaction ends. Keys are locked in
-- sorted order by the caller, so two workers cannot deadlock.
SELECT pg_advisory_xact_lock(hashtextextended(CAST(:agent_id AS text) || '/' || :key, 7420002));

-- lease_keyed --
-- Claim due runs of one owner's concurrency key while fewer than its limit are running. The caller holds the
-- key's advisory lock (lock_key) in this transaction and this statement takes a fresh snapshot, so
-- the running count includes every lease committed by the previous holder of the lock.
WITH running AS (
    SELECT count(*) AS n
      FROM due_work
     WHERE state = 'running' AND concurrency_key = :key AND agent_id = :agent_id),
lim AS (
    SELECT min(concurrency_limit) AS k
      FROM due_work
     WHERE state IN ('queued', 'failed') AND concurrency_key = :key AND agent_id = :agent_id),
picked AS (
    SELECT id, task_id
      FROM due_work
     WHERE concurrency_key = :key AND agent_id = :agent_id
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
) AS next_at, now() AS db_now;

-- record_outcomes --
-- Record finished attempts, whoever ended them: runs claimed and run inside the calling transaction
-- (token NULL: the rows are locked by this transaction and were never leased), leases finished by
-- their worker, and leases the rescuer found expired. The only statement that writes task_run for an
-- attempt that was made. A leased row changes only while it is still running under the same token
-- (fencing): a worker whose lease expired and was rescued cannot overwrite the new holder's state,
-- and a claimed outcome can never touch a lease. Exactly the rows that changed get their task_run
-- row (and, where the owner's webhooks subscribe to run events, a run.* message). A run to retry
-- stays queued as failed; a run that ended leaves the queue. The run_now parameters go with it
-- (task_run.params), so a dead run can be retried as it ran (store/runs.sql).
-- started_at is the database clock at lease (at claim: now(), the claiming transaction's start),
-- finished_at that plus the duration the worker measured, so worker clock skew cannot reorder
-- history. The batch arrives as one JSON array: one value to send and parse, instead of an array
-- per column whose text form escapes every quote of every step record.
WITH outcome AS (
    SELECT *
      FROM jsonb_to_recordset(CAST(:batch AS jsonb))
           AS o(id bigint, token uuid, attempt integer, state text, retry_in_s double precision,
                duration_s double precision, steps jsonb, output jsonb, error jsonb, record_bytes integer)),
retried AS (
    UPDATE due_work d
       SET state = 'failed',
           attempt = o.attempt,
           run_at = now() + make_interval(secs => o.retry_in_s),
           lease_token = NULL,
           lease_until = NULL,
           last_error = o.error,
           worker_id = CASE WHEN o.token IS NULL THEN :worker_id ELSE d.worker_id END,
           started_at = CASE WHEN o.token IS NULL THEN now() ELSE d.started_at END
      FROM outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))  -- a primary-key probe whatever the statistics say
       AND d.id = o.id AND o.state = 'failed'
       AND CASE WHEN o.token IS NULL THEN d.state <> 'running'
                ELSE d.lease_token = o.token AND d.state = 'running' END
    RETURNING d.id, d.task_id, d.origin, d.scheduled_for, d.created_at, d.priority, d.max_attempts,
              d.event_id, d.params, d.worker_id, d.started_at, d.agent_id),
ended AS (
    DELETE FROM due_work d
     USING outcome o
     WHERE d.id = ANY(CAST(:ids AS bigint[]))
       AND d.id = o.id AND o.state <> 'failed'
       AND CASE WHEN o.token IS NULL THEN d.state <> 'running'
                ELSE d.lease_token = o.token AND d.state = 'running' END
    RETURNING d.id, d.task_id, d.origin, d.scheduled_for, d.created_at, d.priority, d.max_attempts,
              d.event_id, d.params,
              CASE WHEN o.token IS NULL THEN CAST(:worker_id AS text) ELSE d.worker_id END AS worker_id,
              CASE WHEN o.token IS NULL THEN now() ELSE d.started_at END AS started_at, d.agent_id),
changed AS (
    SELECT * FROM retried
    UNION ALL
    SELECT * FROM ended),
recorded AS (
    INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                          event_id, params, state, final, worker_id, started_at, finished_at, steps, output,
                          error, record_bytes, agent_id)
    SELECT c.id, o.attempt, c.task_id, c.origin, c.scheduled_for, c.created_at, c.priority, c.max_attempts,
           c.event_id, c.params, o.state, o.state <> 'failed', c.worker_id, c.started_at,
           c.started_at + make_interval(secs => o.duration_s), coalesce(o.steps, '[]'), o.output, o.error,
           o.record_bytes, c.agent_id
      FROM changed c
      JOIN outcome o ON o.id = c.id
    RETURNING run_id, attempt, task_id, state, scheduled_for, finished_at, error),
-- Webhook system events about the owners' runs: run.succeeded, run.failed (will be retried), run.dead,
-- to the owner's endpoints subscribed to them. The uncorrelated EXISTS is a one-time filter
-- (webhook_endpoint_events_idx): while no endpoint subscribes to run events, nothing below runs and
-- recording pays one index probe per batch. Deliveries are not runs: they make no events of their own.
run_events AS (
    SELECT t.agent_id, 'run.' || r.state AS type,
           jsonb_build_object(
               'run_id', r.run_id, 'task_id', r.task_id, 'task_title', t.title, 'attempt', r.attempt,
               'state', r.state, 'scheduled_for', r.scheduled_for, 'finished_at', r.finished_at,
               'error', CASE WHEN r.error IS NOT NULL
                             THEN jsonb_build_object('code', r.error -> 'code', 'message', r.error -> 'message')
                        END) AS data
      FROM recorded r
      JOIN task t ON t.id = r.task_id
     WHERE r.state IN ('succeeded', 'failed', 'dead')
       AND EXISTS (SELECT 1
                     FROM webhook_endpoint
                    WHERE events && CAST(ARRAY['run.succeeded', 'run.failed', 'run.dead'] AS text[]))),
run_messages AS (
    INSERT INTO webhook_message (agent_id, type, data)
    SELECT re.agent_id, re.type, re.data
      FROM run_events re
     WHERE EXISTS (SELECT 1 FROM webhook_endpoint e
                    WHERE e.agent_id = re.agent_id AND e.events @> ARRAY[re.type])
    RETURNING id, agent_id, type),
run_deliveries AS (
    INSERT INTO webhook_delivery (message_id, endpoint_id)
    SELECT m.id, e.id
      FROM run_messages m
      JOIN webhook_endpoint e ON e.agent_id = m.agent_id AND e.events @> ARRAY[m.type])
SELECT run_id FROM recorded;

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

-- expired_leases --
-- Leases whose worker died or stopped renewing them, oldest expiry first, locked for the rescuer's
-- transaction, which records each abandoned attempt with record_outcomes (due_work_lease_idx).
-- SKIP LOCKED steps around a worker renewing or finishing the same row right now, and around
-- another worker's rescuer.
SELECT d.id, d.lease_token, d.attempt, d.max_attempts, d.task_id, d.worker_id,
       greatest(0, extract(epoch FROM now() - d.started_at)) AS duration_s
  FROM due_work d
 WHERE d.state = 'running' AND d.lease_until < coalesce(CAST(:now AS timestamptz), now())
 ORDER BY d.lease_until
 LIMIT :n
   FOR UPDATE SKIP LOCKED;

-- task_definitions --
-- What a worker needs to run a task's pipeline; cached by (id, version).
SELECT id, version, status, title, timezone, payload, timeout_s, agent_id,
       backoff_base_s, backoff_cap_s, backoff_jitter
  FROM task
 WHERE id = ANY(CAST(:ids AS uuid[]));

-- owner_scopes --
-- What each agent may do now (workers/owners.py): the union of the scopes of its live tokens (neither
-- revoked nor expired), nothing for a disabled agent; and in how many seconds the first of those
-- tokens expires, so that a cached answer lasts no longer (api_token_agent_idx).
SELECT a.id,
       CASE WHEN a.disabled_at IS NOT NULL THEN CAST('{}' AS text[])
            ELSE coalesce((SELECT array_agg(DISTINCT s)
                             FROM api_token t CROSS JOIN LATERAL unnest(t.scopes) AS s
                            WHERE t.agent_id = a.id AND t.revoked_at IS NULL
                              AND (t.expires_at IS NULL OR t.expires_at > now())),
                          CAST('{}' AS text[])) END AS scopes,
       (SELECT extract(epoch FROM min(t.expires_at) - now())
          FROM api_token t
         WHERE t.agent_id = a.id AND t.revoked_at IS NULL AND t.expires_at > now()) AS next_expiry_s
  FROM agent a
 WHERE a.id = ANY(CAST(:ids AS uuid[]));

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
-- Liveness, and the health of the worker's background loops (see workers/health.py).
UPDATE worker SET heartbeat_at = now(), state = :state, loops = CAST(:loops AS jsonb) WHERE id = :id;

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
