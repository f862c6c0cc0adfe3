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
-- Active time-based tasks whose expansion point (task_expansion: only such tasks have one) falls before
-- the horizon end (task_expansion_due_idx), but for :later (slow tasks this tick has no time left for).
-- The task rows are locked so that an edit (which locks the task row, then changes its place) and the
-- tick never interleave; tasks being edited are skipped and picked up by the next tick. The places are
-- locked too: an edit that commits after this statement's snapshot but before it reaches the task is
-- seen in the locked rows alone (READ COMMITTED rechecks only those), so with the task row alone the
-- tick would expand a paused task, or a new schedule from the old schedule's place. A place withdrawn
-- or replaced by the edit is skipped instead (the next tick reads the new one).
-- Answered in groups of tasks alike (what their plan depends on: schedule, place, misfire policy; and
-- what their runs take from the task, owner included) with their ids: tasks created together share all of it, so a
-- first tick over 100,000 of them makes a hundred-odd groups, not 100,000 rows for the client to read.
-- The locks keep what was read here until the batch's writes are done.
WITH due AS (
    SELECT t.id, t.agent_id, t.schedule_kind, t.schedule_expr, t.timezone, e.expand_from, t.misfire_policy,
           t.misfire_grace_s, t.priority, t.max_retries + 1 AS max_attempts, t.concurrency_key,
           CASE WHEN t.concurrency_key IS NOT NULL THEN t.concurrency_limit END AS concurrency_limit
      FROM task_expansion e
      JOIN task t ON t.id = e.task_id
     WHERE e.expand_from < :horizon_end
       AND e.task_id <> ALL(CAST(:later AS uuid[]))
     ORDER BY e.expand_from
     LIMIT :n
       FOR NO KEY UPDATE OF t, e SKIP LOCKED)
SELECT schedule_kind, schedule_expr, timezone, expand_from, misfire_policy, misfire_grace_s,
       priority, max_attempts, concurrency_key, concurrency_limit, agent_id, array_agg(id) AS ids
  FROM due
 GROUP BY schedule_kind, schedule_expr, timezone, expand_from, misfire_policy, misfire_grace_s,
          priority, max_attempts, concurrency_key, concurrency_limit, agent_id
 ORDER BY expand_from;

-- insert_occurrences --
-- Queue occurrences. The batch comes in groups (numbered from 1 in the order of the group arrays):
-- each task (:task_ids) with its group's number (:task_groups), each occurrence (:ats) with its
-- group's (:occurrence_groups), and what each group's runs take from their tasks (:priorities ...),
-- paired up here. ON CONFLICT (due_work_occurrence_uq) and the NOT EXISTS probe of finished runs
-- (task_run_occurrence_uq) make a re-run tick or a second scheduler add nothing twice. Answers how
-- many were written (a first tick writes 150,000: their ids would only be counted by the client).
WITH written AS (
INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,
                      concurrency_key, concurrency_limit, agent_id)
SELECT b.task_id, 'schedule', o.at, o.at, g.priority, g.max_attempts, g.concurrency_key, g.concurrency_limit,
       g.agent_id
  FROM unnest(CAST(:task_ids AS uuid[]), CAST(:task_groups AS integer[])) AS b(task_id, grp)
  JOIN unnest(CAST(:occurrence_groups AS integer[]), CAST(:ats AS timestamptz[])) AS o(grp, at)
    ON o.grp = b.grp
  JOIN unnest(CAST(:priorities AS smallint[]), CAST(:max_attempts AS integer[]),
              CAST(:concurrency_keys AS text[]), CAST(:concurrency_limits AS integer[]),
              CAST(:agent_ids AS uuid[]))
       WITH ORDINALITY AS g(priority, max_attempts, concurrency_key, concurrency_limit, agent_id, grp)
    ON g.grp = b.grp
 WHERE NOT EXISTS (
       SELECT 1 FROM task_run r
        WHERE r.task_id = b.task_id AND r.scheduled_for = o.at AND r.origin = 'schedule' AND r.final)
ON CONFLICT (task_id, scheduled_for) WHERE origin = 'schedule' DO NOTHING
RETURNING 1
)
SELECT count(*) FROM written;

-- record_skipped --
-- Occurrences the misfire policy will not run go straight to history as skipped runs, so people
-- can see what did not happen and why. They take a run id from the queue's sequence. Parameters as
-- insert_occurrences, and each group's misfire policy (:policies) for the message.
WITH written AS (
INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      state, final, finished_at, error, agent_id)
SELECT nextval(pg_get_serial_sequence('due_work', 'id')), 1, b.task_id, 'schedule', o.at, now(), g.priority,
       g.max_attempts, 'skipped', true, now(),
       jsonb_build_object(
           'code', 'MISFIRE_SKIPPED',
           'message', 'no scheduler ran at this time; skipped by misfire policy ' || g.misfire_policy),
       g.agent_id
  FROM unnest(CAST(:task_ids AS uuid[]), CAST(:task_groups AS integer[])) AS b(task_id, grp)
  JOIN unnest(CAST(:occurrence_groups AS integer[]), CAST(:ats AS timestamptz[])) AS o(grp, at)
    ON o.grp = b.grp
  JOIN unnest(CAST(:priorities AS smallint[]), CAST(:max_attempts AS integer[]), CAST(:policies AS text[]),
              CAST(:agent_ids AS uuid[]))
       WITH ORDINALITY AS g(priority, max_attempts, misfire_policy, agent_id, grp)
    ON g.grp = b.grp
 WHERE NOT EXISTS (
       SELECT 1 FROM due_work d
        WHERE d.task_id = b.task_id AND d.scheduled_for = o.at AND d.origin = 'schedule')
ON CONFLICT (task_id, scheduled_for) WHERE origin = 'schedule' AND final DO NOTHING
RETURNING 1
)
SELECT count(*) FROM written;

-- advance_tasks --
-- Move each task's expansion point past the horizon just written: to its group's (:expand_from, in
-- group order). A group without one (a schedule with nothing left, or unreadable) ends the tasks'
-- expansion.
WITH place AS (
    SELECT b.task_id, n.expand_from
      FROM unnest(CAST(:task_ids AS uuid[]), CAST(:task_groups AS integer[])) AS b(task_id, grp)
      JOIN unnest(CAST(:expand_from AS timestamptz[])) WITH ORDINALITY AS n(expand_from, grp)
        ON n.grp = b.grp),
ended AS (
    DELETE FROM task_expansion e
     USING place p
     WHERE e.task_id = p.task_id AND p.expand_from IS NULL
       AND e.task_id = ANY(CAST(:task_ids AS uuid[])))
UPDATE task_expansion e
   SET expand_from = p.expand_from
  FROM place p
 WHERE e.task_id = p.task_id AND p.expand_from IS NOT NULL
   -- By primary key (= ANY): joined on the id alone, the planner reads the whole table into a hash for
   -- every batch, which a first tick over 100,000 tasks did 20 times.
   AND e.task_id = ANY(CAST(:task_ids AS uuid[]));
