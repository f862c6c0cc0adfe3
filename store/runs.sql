-- Run statements used by the API, the CLI and benchmarks. A pending run is a due_work row; a run
-- that ended is the final task_run row of its attempts. Both carry the same run id.

-- enqueue_manual --
-- run_now: :n runs of a task, due at once (the due_work trigger NOTIFYs idle workers).
INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,
                      concurrency_key, concurrency_limit, params, event_id, agent_id)
SELECT t.id, :origin, now(), now(), t.priority, t.max_retries + 1,
       t.concurrency_key, CASE WHEN t.concurrency_key IS NOT NULL THEN t.concurrency_limit END,
       CAST(:params AS jsonb), CAST(:event_id AS uuid), t.agent_id
  FROM task t
 CROSS JOIN generate_series(1, :n)
 WHERE t.id = :task_id
RETURNING id;

-- list_runs --
-- History: the runs that have run or are due now, newest scheduled first, keyset-paginated on
-- (scheduled_for, run id). Pending runs come from due_work, leaving out occurrences written ahead
-- whose time has not come (state `scheduled`: list_upcoming lists them); ended runs come from their
-- final task_run row, which carries its own steps and output. A run is in exactly one of the two at
-- any moment (it moves in one statement). Both are read in page order: pending runs back from now
-- over due_work_history_idx, keeping the agent's own (an agent behind another's backlog passes it);
-- ended runs from task_run_owner_idx for an agent and task_run_history_idx (or task_run_task_idx /
-- task_run_dead_idx) for admins, so a page of history costs about a page of rows however long the
-- history is and however small the agent's share of it. Ended runs are read by two arms, one of them
-- empty: everyone's rows for an admin, the agent's own otherwise. Both stay in the one plan the
-- statement is prepared with (an `:agent_id IS NULL OR agent_id = :agent_id` condition could use
-- neither index), and each is planned on its own, which is what lets `agent_id = :agent_id` give
-- task_run_owner_idx's order.
WITH pending AS (
    SELECT d.id AS run_id, d.task_id, d.state, d.attempt, d.max_attempts, d.origin, d.priority,
           d.scheduled_for, d.run_at, d.created_at, d.started_at, CAST(NULL AS timestamptz) AS finished_at,
           d.worker_id, d.event_id, d.cancel_requested, d.last_error AS error,
           (SELECT a.steps FROM task_run a WHERE a.run_id = d.id AND a.attempt = d.attempt) AS steps,
           (SELECT a.output FROM task_run a WHERE a.run_id = d.id AND a.attempt = d.attempt) AS output,
           (SELECT a.record_bytes FROM task_run a WHERE a.run_id = d.id AND a.attempt = d.attempt)
               AS record_bytes
      FROM due_work d
     WHERE NOT (d.state = 'queued' AND d.run_at > coalesce(CAST(:now AS timestamptz), now()))
       -- what is listed was due when written or leased, and a run is never due before its time
       -- (run_at >= scheduled_for): the walk back starts at now, past the occurrences written ahead
       AND d.scheduled_for <= coalesce(CAST(:now AS timestamptz), now())
       AND (CAST(:task_id AS uuid) IS NULL OR d.task_id = :task_id)
       AND (CAST(:states AS text[]) IS NULL OR d.state = ANY(CAST(:states AS text[])))
       AND (CAST(:worker_id AS text) IS NULL OR d.worker_id = :worker_id)
       AND (CAST(:since AS timestamptz) IS NULL OR d.created_at >= :since)
       AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
       AND (CAST(:after_at AS timestamptz) IS NULL
            OR (d.scheduled_for, d.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
       AND (CAST(:agent_id AS uuid) IS NULL OR d.agent_id = :agent_id)
     ORDER BY d.scheduled_for DESC, d.id DESC
     LIMIT :limit),
ended AS (
    SELECT r.run_id, r.task_id, r.state, r.attempt, r.max_attempts, r.origin, r.priority,
           r.scheduled_for, CAST(NULL AS timestamptz) AS run_at, r.created_at, r.started_at, r.finished_at,
           r.worker_id, r.event_id, false AS cancel_requested, r.error, r.steps, r.output, r.record_bytes
      FROM ((SELECT * FROM task_run a
              WHERE a.final AND CAST(:agent_id AS uuid) IS NULL
                AND (CAST(:task_id AS uuid) IS NULL OR a.task_id = :task_id)
                AND (CAST(:states AS text[]) IS NULL OR a.state = ANY(CAST(:states AS text[])))
                AND (CAST(:worker_id AS text) IS NULL OR a.worker_id = :worker_id)
                AND (CAST(:since AS timestamptz) IS NULL OR a.created_at >= :since)
                AND (CAST(:until AS timestamptz) IS NULL OR a.created_at < :until)
                AND (CAST(:after_at AS timestamptz) IS NULL
                     OR (a.scheduled_for, a.run_id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
              ORDER BY a.scheduled_for DESC, a.run_id DESC
              LIMIT :limit)
            UNION ALL
            -- the same filters: an arm limited to a page is planned to read a page (without the
            -- limit it was planned to be read whole, and a sort of the agent's history won)
            (SELECT * FROM task_run o
              WHERE o.final AND o.agent_id = :agent_id
                AND (CAST(:task_id AS uuid) IS NULL OR o.task_id = :task_id)
                AND (CAST(:states AS text[]) IS NULL OR o.state = ANY(CAST(:states AS text[])))
                AND (CAST(:worker_id AS text) IS NULL OR o.worker_id = :worker_id)
                AND (CAST(:since AS timestamptz) IS NULL OR o.created_at >= :since)
                AND (CAST(:until AS timestamptz) IS NULL OR o.created_at < :until)
                AND (CAST(:after_at AS timestamptz) IS NULL
                     OR (o.scheduled_for, o.run_id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
              ORDER BY o.scheduled_for DESC, o.run_id DESC
              LIMIT :limit)) r),
page AS (
    SELECT * FROM pending
    UNION ALL
    SELECT * FROM ended
    ORDER BY scheduled_for DESC, run_id DESC
    LIMIT :limit)
-- Each run leaves as the JSON document the API sends (the shape of runs.public(), timestamps as
-- store.domain.iso_utc writes them: UTC with microseconds): a page is then one text per run, with no
-- per-field work in Python. A page is bounded: an output (a step's or the run's) larger than
-- :output_max bytes is listed as {"truncated": true, "bytes": N} (the run's detail has it whole);
-- record_bytes lets attempts recorded smaller than that skip the check.
SELECT p.run_id, p.scheduled_for,
       json_build_object(
           'id', p.run_id,
           'task_id', p.task_id,
           'task_title', (SELECT t.title FROM task t WHERE t.id = p.task_id),
           'state', p.state,
           'attempt', p.attempt,
           'max_attempts', p.max_attempts,
           'origin', p.origin,
           'priority', p.priority,
           'scheduled_for', to_char(p.scheduled_for AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'run_at', to_char(p.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'started_at', to_char(p.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'finished_at', to_char(p.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'worker_id', p.worker_id,
           'event_id', p.event_id,
           'cancel_requested', p.cancel_requested,
           'error', p.error,
           'steps', CASE WHEN p.record_bytes <= :output_max THEN coalesce(p.steps, '[]'::jsonb)
                         ELSE ordo_listed_steps(coalesce(p.steps, '[]'::jsonb), :output_max) END,
           'output', CASE WHEN p.record_bytes <= :output_max THEN p.output
                          ELSE ordo_listed_value(p.output, :output_max) END)::text AS doc
  FROM page p
 ORDER BY p.scheduled_for DESC, p.run_id DESC;

-- list_upcoming --
-- Occurrences the scheduler wrote ahead whose time has not come (state `scheduled`), soonest first,
-- keyset-paginated on (scheduled_for, id). The queue holds one horizon's worth of them
-- (ORDO_SCHEDULER_HORIZON_S), so a scan of it is bounded; an agent's are kept by the owner on the row.
SELECT d.id AS run_id, d.task_id, 'scheduled' AS state, d.attempt, d.max_attempts, d.origin, d.priority,
       d.scheduled_for, d.run_at, d.created_at, d.started_at, CAST(NULL AS timestamptz) AS finished_at,
       d.worker_id, d.event_id, d.cancel_requested, d.last_error AS error,
       (SELECT t.title FROM task t WHERE t.id = d.task_id) AS task_title
  FROM due_work d
 WHERE d.state = 'queued' AND d.run_at > coalesce(CAST(:now AS timestamptz), now())
   AND (CAST(:task_id AS uuid) IS NULL OR d.task_id = :task_id)
   AND (CAST(:agent_id AS uuid) IS NULL OR d.agent_id = :agent_id)
   AND (CAST(:after_at AS timestamptz) IS NULL
        OR (d.scheduled_for, d.id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
 ORDER BY d.scheduled_for, d.id
 LIMIT :limit;

-- get_pending_run --
-- A run still in the queue; an occurrence written ahead whose time has not come shows as `scheduled`.
SELECT d.id AS run_id, d.task_id,
       CASE WHEN d.state = 'queued' AND d.run_at > now() THEN 'scheduled' ELSE d.state END AS state, d.attempt, d.max_attempts, d.origin, d.priority,
       d.scheduled_for, d.run_at, d.created_at, d.started_at, CAST(NULL AS timestamptz) AS finished_at,
       d.worker_id, d.event_id, d.cancel_requested, d.last_error AS error, t.title AS task_title, t.agent_id
  FROM due_work d
  JOIN task t ON t.id = d.task_id
 WHERE d.id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR t.agent_id = :agent_id);

-- get_ended_run --
SELECT r.run_id, r.task_id, r.state, r.attempt, r.max_attempts, r.origin, r.priority,
       r.scheduled_for, CAST(NULL AS timestamptz) AS run_at, r.created_at, r.started_at, r.finished_at,
       r.worker_id, r.event_id, false AS cancel_requested, r.error, t.title AS task_title, t.agent_id
  FROM task_run r
  JOIN task t ON t.id = r.task_id
 WHERE r.run_id = :id AND r.final
   AND (CAST(:agent_id AS uuid) IS NULL OR t.agent_id = :agent_id);

-- attempts --
SELECT attempt, state, worker_id, started_at, finished_at, steps, output, error
  FROM task_run
 WHERE run_id = :run_id
 ORDER BY attempt;

-- cancel_waiting_run --
-- A run that has not started (queued, or failed and waiting for its retry) ends as canceled: it
-- leaves the queue and its unstarted attempt is recorded as the final one.
WITH waiting AS (
    DELETE FROM due_work WHERE id = :id AND state IN ('queued', 'failed') RETURNING *)
INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      event_id, params, state, final, finished_at, error, agent_id)
SELECT id, attempt + 1, task_id, origin, scheduled_for, created_at, priority, max_attempts,
       event_id, params, 'canceled', true, now(), jsonb_build_object('code', 'CANCELED', 'message', CAST(:message AS text)),
       agent_id
  FROM waiting
RETURNING run_id;

-- request_cancel --
-- A running run is asked to stop at its next step boundary (the worker sees the flag with its
-- heartbeat and records the attempt as canceled).
UPDATE due_work SET cancel_requested = true WHERE id = :id AND state = 'running' RETURNING id;

-- retry_now --
-- A failed run waiting for its backoff becomes due at once; the worker makes its next attempt.
UPDATE due_work SET run_at = now() WHERE id = :id AND state = 'failed' RETURNING id;

-- reopen_dead --
-- A dead run gets one more attempt. Its last attempt is recorded as failed (it is being retried)
-- rather than dead, and the run returns to the queue under the same id, due now, with room for
-- exactly that attempt: if it fails too, the run is dead again (and can be retried again). The run
-- keeps its origin, scheduled time and run_now parameters; priority and concurrency key are the
-- task's current ones. A run is in one place at a time: the final row stops being final as the
-- queue row appears, in one statement.
WITH reopened AS (
    UPDATE task_run r
       SET state = 'failed', final = false
     WHERE r.run_id = :id AND r.final AND r.state = 'dead'
    RETURNING r.*)
INSERT INTO due_work (id, task_id, origin, scheduled_for, run_at, priority, state, attempt, max_attempts,
                      concurrency_key, concurrency_limit, event_id, params, last_error, created_at, agent_id)
OVERRIDING SYSTEM VALUE
SELECT o.run_id, o.task_id, o.origin, o.scheduled_for, now(), t.priority, 'failed', o.attempt, o.attempt + 1,
       t.concurrency_key, CASE WHEN t.concurrency_key IS NOT NULL THEN t.concurrency_limit END,
       (SELECT e.id FROM event e WHERE e.id = o.event_id), o.params, o.error, o.created_at, t.agent_id
  FROM reopened o
  JOIN task t ON t.id = o.task_id
RETURNING id;

-- prune_finished --
-- Retention: runs that ended before the cutoff go, with all their attempts. Oldest run ids first, in
-- batches, so a large backlog never holds long locks.
WITH old AS (
    SELECT run_id FROM task_run
     WHERE final AND finished_at < :cutoff
     ORDER BY run_id
     LIMIT :n)
DELETE FROM task_run r USING old WHERE r.run_id = old.run_id
RETURNING r.run_id;
