-- Run statements used by the API, the CLI and benchmarks. A pending run is a due_work row; a run
-- that ended is the final task_run row of its attempts. Both carry the same run id.

-- enqueue_manual --
-- run_now: :n runs of a task, due at once (the due_work trigger NOTIFYs idle workers).
INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,
                      concurrency_key, concurrency_limit, params, event_id)
SELECT t.id, :origin, now(), now(), t.priority, t.max_retries + 1,
       t.concurrency_key, CASE WHEN t.concurrency_key IS NOT NULL THEN t.concurrency_limit END,
       CAST(:params AS jsonb), CAST(:event_id AS uuid)
  FROM task t
 CROSS JOIN generate_series(1, :n)
 WHERE t.id = :task_id
RETURNING id;

-- list_runs --
-- Newest first, keyset-paginated on the run id: pending runs from due_work, ended runs from their
-- final task_run row (which carries its own steps and output). A run is in exactly one of the two at
-- any moment (it moves in one statement), so a client paging while runs are added or finish sees
-- each run once, with no gaps. Every lookup is a primary-key probe, so a page costs the same however
-- long the history is.
WITH pending AS (
    SELECT d.id AS run_id, d.task_id, d.state, d.attempt, d.max_attempts, d.origin, d.priority,
           d.scheduled_for, d.run_at, d.created_at, d.started_at, CAST(NULL AS timestamptz) AS finished_at,
           d.worker_id, d.event_id, d.cancel_requested, d.last_error AS error,
           (SELECT a.steps FROM task_run a WHERE a.run_id = d.id AND a.attempt = d.attempt) AS steps,
           (SELECT a.output FROM task_run a WHERE a.run_id = d.id AND a.attempt = d.attempt) AS output
      FROM due_work d
     WHERE (CAST(:task_id AS uuid) IS NULL OR d.task_id = :task_id)
       AND (CAST(:states AS text[]) IS NULL OR d.state = ANY(CAST(:states AS text[])))
       AND (CAST(:worker_id AS text) IS NULL OR d.worker_id = :worker_id)
       AND (CAST(:since AS timestamptz) IS NULL OR d.created_at >= :since)
       AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
       AND (CAST(:before_id AS bigint) IS NULL OR d.id < :before_id)
       AND (CAST(:agent_id AS uuid) IS NULL OR (SELECT t.agent_id FROM task t WHERE t.id = d.task_id) = :agent_id)
     ORDER BY d.id DESC
     LIMIT :limit),
ended AS (
    SELECT r.run_id, r.task_id, r.state, r.attempt, r.max_attempts, r.origin, r.priority,
           r.scheduled_for, CAST(NULL AS timestamptz) AS run_at, r.created_at, r.started_at, r.finished_at,
           r.worker_id, r.event_id, false AS cancel_requested, r.error, r.steps, r.output
      FROM task_run r
     WHERE r.final
       AND (CAST(:task_id AS uuid) IS NULL OR r.task_id = :task_id)
       AND (CAST(:states AS text[]) IS NULL OR r.state = ANY(CAST(:states AS text[])))
       AND (CAST(:worker_id AS text) IS NULL OR r.worker_id = :worker_id)
       AND (CAST(:since AS timestamptz) IS NULL OR r.created_at >= :since)
       AND (CAST(:until AS timestamptz) IS NULL OR r.created_at < :until)
       AND (CAST(:before_id AS bigint) IS NULL OR r.run_id < :before_id)
       -- the owner is probed per row (task_pkey) as the scan walks back; a semi-join would hash
       -- all of the agent's tasks first, whatever the page size
       AND (CAST(:agent_id AS uuid) IS NULL OR (SELECT t.agent_id FROM task t WHERE t.id = r.task_id) = :agent_id)
     ORDER BY r.run_id DESC
     LIMIT :limit),
page AS (
    SELECT * FROM pending
    UNION ALL
    SELECT * FROM ended
    ORDER BY run_id DESC
    LIMIT :limit)
-- Each run leaves as the JSON document the API sends (the shape of runs.public(), timestamps in
-- UTC with microseconds, as runs._iso writes them): a page is then one text per run, with no
-- per-field work in Python.
SELECT p.run_id,
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
           'steps', coalesce(p.steps, '[]'::jsonb),
           'output', p.output)::text AS doc
  FROM page p
 ORDER BY p.run_id DESC;

-- get_pending_run --
SELECT d.id AS run_id, d.task_id, d.state, d.attempt, d.max_attempts, d.origin, d.priority,
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
                      event_id, state, final, finished_at, error)
SELECT id, attempt + 1, task_id, origin, scheduled_for, created_at, priority, max_attempts,
       event_id, 'canceled', true, now(), jsonb_build_object('code', 'CANCELED', 'message', CAST(:message AS text))
  FROM waiting
RETURNING run_id;

-- request_cancel --
-- A running run is asked to stop at its next step boundary (the worker sees the flag with its
-- heartbeat and records the attempt as canceled).
UPDATE due_work SET cancel_requested = true WHERE id = :id AND state = 'running' RETURNING id;

-- queue_depth --
-- Waiting runs by state, for metrics and health.
SELECT state, count(*) AS n, min(run_at) AS oldest_run_at
  FROM due_work
 GROUP BY state;

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
