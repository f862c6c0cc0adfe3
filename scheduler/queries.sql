-- Scheduler statements: find tasks whose next occurrence enters the horizon, write occurrences,
-- advance each task's place, record leadership.

-- try_lead --
-- Session-level advisory lock: held for as long as the leader's connection lives. When the leader
-- dies its session ends and the lock is free for a standby.
SELECT pg_try_advisory_lock(7420003) AS leader;

-- leader_keepalive --
-- Make the server notice a vanished leader host within ~10 s (keepalive probes on the lock session),
-- so the lock is released and a standby takes over.
SELECT set_config('tcp_keepalives_idle', '4', false),
       set_config('tcp_keepalives_interval', '2', false),
       set_config('tcp_keepalives_count', '2', false);

-- claim_leadership --
INSERT INTO scheduler_leader (singleton, scheduler_id, since, heartbeat_at)
VALUES (true, :scheduler_id, now(), now())
ON CONFLICT (singleton) DO UPDATE
   SET scheduler_id = EXCLUDED.scheduler_id, since = now(), heartbeat_at = now();

-- leader_heartbeat --
UPDATE scheduler_leader SET heartbeat_at = now() WHERE scheduler_id = :scheduler_id;

-- due_tasks --
-- Active time-based tasks whose next occurrence falls before the horizon end (task_next_fire_idx).
-- Locked so that an edit (which locks the row too) and the tick never interleave; rows being edited
-- are skipped and picked up by the next tick.
SELECT id, version, schedule_kind, schedule_expr, timezone, next_fire_at, misfire_policy, misfire_grace_s
  FROM task
 WHERE next_fire_at IS NOT NULL
   AND next_fire_at < :horizon_end
 ORDER BY next_fire_at
 LIMIT :n
   FOR NO KEY UPDATE SKIP LOCKED;

-- insert_occurrences --
-- Write occurrences; ON CONFLICT makes a re-run tick or a second scheduler add nothing twice
-- (due_work_occurrence_uq). Misfired occurrences that will not run are written as skipped runs so
-- history shows them.
INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,
                      concurrency_key, concurrency_limit, state, finished_at, last_error)
SELECT t.id, 'schedule', o.at, o.at, t.priority, t.max_retries + 1,
       t.concurrency_key, CASE WHEN t.concurrency_key IS NOT NULL THEN t.concurrency_limit END,
       o.state,
       CASE WHEN o.state = 'skipped' THEN now() END,
       CASE WHEN o.state = 'skipped' THEN jsonb_build_object(
           'code', 'MISFIRE_SKIPPED',
           'message', 'no scheduler ran at this time; skipped by misfire policy ' || t.misfire_policy) END
  FROM unnest(CAST(:task_ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:states AS text[])) AS o(task_id, at, state)
  JOIN task t ON t.id = o.task_id
ON CONFLICT (task_id, scheduled_for) WHERE origin = 'schedule' DO NOTHING
RETURNING state;

-- advance_tasks --
UPDATE task t
   SET next_fire_at = n.next_fire_at
  FROM unnest(CAST(:ids AS uuid[]), CAST(:next_fire_at AS timestamptz[])) AS n(id, next_fire_at)
 WHERE t.id = n.id;
