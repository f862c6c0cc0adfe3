-- Run statements used by the API, the CLI and benchmarks. A run is a due_work row; its attempts are
-- task_run rows.

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
-- Newest first, keyset-paginated on id (the primary key), so rows inserted while a client pages
-- appear only before its first page and are never skipped or repeated. The latest attempt supplies
-- steps and output.
SELECT d.*, t.title AS task_title, a.steps, a.output
  FROM due_work d
  JOIN task t ON t.id = d.task_id
  LEFT JOIN LATERAL (
       SELECT steps, output FROM task_run r WHERE r.work_id = d.id ORDER BY r.attempt DESC LIMIT 1) a ON true
 WHERE (CAST(:agent_id AS uuid) IS NULL OR t.agent_id = :agent_id)
   AND (CAST(:task_id AS uuid) IS NULL OR d.task_id = :task_id)
   AND (CAST(:states AS text[]) IS NULL OR d.state = ANY(CAST(:states AS text[])))
   AND (CAST(:worker_id AS text) IS NULL OR d.worker_id = :worker_id)
   AND (CAST(:since AS timestamptz) IS NULL OR d.created_at >= :since)
   AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
   AND (CAST(:before_id AS bigint) IS NULL OR d.id < :before_id)
 ORDER BY d.id DESC
 LIMIT :limit;

-- get_run --
SELECT d.*, t.title AS task_title, t.agent_id
  FROM due_work d
  JOIN task t ON t.id = d.task_id
 WHERE d.id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR t.agent_id = :agent_id);

-- attempts --
SELECT attempt, state, worker_id, started_at, finished_at, steps, output, error
  FROM task_run
 WHERE work_id = :work_id
 ORDER BY attempt;

-- cancel_run --
-- A waiting run is withdrawn at once; a running one is asked to stop at its next step boundary
-- (the worker sees the flag with its heartbeat and records the attempt as canceled).
UPDATE due_work
   SET state = CASE WHEN state = 'running' THEN state ELSE 'canceled' END,
       finished_at = CASE WHEN state = 'running' THEN finished_at ELSE now() END,
       cancel_requested = true,
       last_error = CASE WHEN state = 'running' THEN last_error
                         ELSE jsonb_build_object('code', 'CANCELED', 'message', 'canceled by request') END
 WHERE id = :id AND state IN ('queued', 'failed', 'running')
RETURNING id, state;

-- queue_depth --
-- Waiting runs by state, for metrics and `ordo status`.
SELECT state, count(*) AS n, min(run_at) AS oldest_run_at
  FROM due_work
 WHERE state IN ('queued', 'failed', 'running')
 GROUP BY state;

-- prune_finished --
-- Retention: finished runs older than the cutoff go, with their attempts (ON DELETE CASCADE).
-- Batched so a large backlog never holds long locks.
WITH old AS (
    SELECT id FROM due_work
     WHERE finished_at < :cutoff
     ORDER BY finished_at
     LIMIT :n)
DELETE FROM due_work d USING old WHERE d.id = old.id
RETURNING d.id;
