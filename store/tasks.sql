-- Task statements used by the API and the CLI. `expand_from` is the scheduler's place in a task's
-- schedule (migrations/0007: it was called next_fire_at, which the API now uses for the next occurrence),
-- kept in task_expansion (migrations/0009) while the task is active and time-based.

-- insert_task --
-- The task, and its place in task_expansion when it has one (:expand_from, NULL: nothing to expand).
-- Shaped for store.audit.audited, which adds the task's audit entry to it (POST /tasks).
WITH created AS (
INSERT INTO task (agent_id, title, description, schedule_kind, schedule_expr, timezone, payload, status,
                  priority, max_retries, backoff_base_s, backoff_cap_s, backoff_jitter, timeout_s,
                  concurrency_key, concurrency_limit, misfire_policy, misfire_grace_s)
VALUES (:agent_id, :title, :description, :schedule_kind, :schedule_expr, :timezone, CAST(:payload AS jsonb),
        :status, :priority, :max_retries, :backoff_base_s, :backoff_cap_s, :backoff_jitter, :timeout_s,
        :concurrency_key, :concurrency_limit, :misfire_policy, :misfire_grace_s)
RETURNING *),
placed AS (
INSERT INTO task_expansion (task_id, expand_from)
SELECT id, CAST(:expand_from AS timestamptz) FROM created WHERE CAST(:expand_from AS timestamptz) IS NOT NULL)
SELECT * FROM created;

-- update_task --
-- Replace a task's definition (a PATCH merged and re-validated by the caller). The version bump makes
-- workers recompile the pipeline. An in-flight scheduler tick never mixes old and new: it locks the task
-- rows and places it expands (scheduler/queries.sql due_tasks), and the caller holds this row's lock.
UPDATE task
   SET title = :title, description = :description, schedule_kind = :schedule_kind,
       schedule_expr = :schedule_expr, timezone = :timezone, payload = CAST(:payload AS jsonb),
       status = :status, priority = :priority, max_retries = :max_retries,
       backoff_base_s = :backoff_base_s, backoff_cap_s = :backoff_cap_s, backoff_jitter = :backoff_jitter,
       timeout_s = :timeout_s, concurrency_key = :concurrency_key, concurrency_limit = :concurrency_limit,
       misfire_policy = :misfire_policy, misfire_grace_s = :misfire_grace_s,
       version = version + 1, updated_at = now()
 WHERE id = :id
RETURNING *;

-- get_task --
-- One task; `agent_id` NULL means any owner (admin, local CLI). FOR UPDATE variants live below.
SELECT *
  FROM task
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id);

-- get_task_for_update --
-- The same, locking the row: status changes and edits serialise with the scheduler's tick, which
-- locks the tasks it expands (FOR NO KEY UPDATE SKIP LOCKED).
SELECT *
  FROM task
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   FOR UPDATE;

-- task_ids_by_prefix --
-- Ids of the tasks whose id starts with :prefix (hex digits, no dashes), for `ordo task ... ID-PREFIX`.
-- A scan: the CLI asks it once per command, and the task table holds definitions, not runs.
SELECT id
  FROM task
 WHERE replace(CAST(id AS text), '-', '') LIKE :prefix || '%'
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
 ORDER BY id
 LIMIT :n;

-- list_tasks --
-- Newest first, keyset-paginated on (created_at, id) over task_agent_idx / a scan for admins.
SELECT *
  FROM task
 WHERE (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   AND (CAST(:status AS text) IS NULL OR status = :status)
   AND (CAST(:schedule_kind AS text) IS NULL OR schedule_kind = :schedule_kind)
   AND (CAST(:text AS text) IS NULL OR title ILIKE '%' || :text || '%' OR description ILIKE '%' || :text || '%')
   AND (CAST(:after_created AS timestamptz) IS NULL
        OR (created_at, id) < (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
 ORDER BY created_at DESC, id DESC
 LIMIT :limit;

-- set_status --
UPDATE task
   SET status = :status, version = version + 1, updated_at = now()
 WHERE id = :id
RETURNING *;

-- set_expansion --
-- Where the scheduler's next expansion of a task starts (creation, resume, a changed schedule). The task
-- must be active and time-based (the foreign key on task_expansion says so).
INSERT INTO task_expansion (task_id, expand_from)
VALUES (:task_id, :expand_from)
ON CONFLICT (task_id) DO UPDATE SET expand_from = EXCLUDED.expand_from;

-- clear_expansion --
-- Nothing more to expand: before a task stops being active and time-based (the foreign key on
-- task_expansion refuses that while the row is there), and before its schedule is replaced.
DELETE FROM task_expansion WHERE task_id = :task_id;

-- withdraw_scheduled --
-- Pause, cancel or a schedule change: occurrences the scheduler wrote that never started are deleted,
-- so that resuming can write the same instants again (due_work_occurrence_uq).
DELETE FROM due_work
 WHERE task_id = :task_id AND origin = 'schedule' AND state = 'queued' AND attempt = 0;

-- cancel_waiting --
-- Cancel: every other run of the task that waits (queued by hand or event, or awaiting a retry) ends
-- as canceled in history; running ones are asked to stop at the next step boundary.
WITH waiting AS (
    DELETE FROM due_work
     WHERE task_id = :task_id AND state IN ('queued', 'failed')
    RETURNING *),
recorded AS (
    INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                          event_id, params, state, final, finished_at, error, agent_id)
    SELECT id, attempt + 1, task_id, origin, scheduled_for, created_at, priority, max_attempts,
           event_id, params, 'canceled', true, now(),
           jsonb_build_object('code', 'TASK_CANCELED', 'message', 'the task was canceled'),
           agent_id
      FROM waiting
    RETURNING run_id),
running AS (
    UPDATE due_work SET cancel_requested = true
     WHERE task_id = :task_id AND state = 'running'
    RETURNING id)
SELECT (SELECT count(*) FROM recorded) AS canceled, (SELECT count(*) FROM running) AS stopping;

-- delete_task --
-- The task and its pending runs (the task_delete_runs trigger of migration 0010, which needs READ
-- COMMITTED, as the store's transactions are). Runs being finished right now hold their due_work rows,
-- so this waits for them; delete_task_history then sees their history rows.
DELETE FROM task WHERE id = :id RETURNING id;

-- delete_task_history --
DELETE FROM task_run WHERE task_id = :id;

-- insert_tasks --
-- Many validated tasks of one agent in one statement (a batch): :rows is a JSON array of objects with
-- the insert_task parameters and a client-made id. Column types come from the record definition.
WITH r AS (
SELECT *
  FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
       id uuid, title text, description text, schedule_kind text, schedule_expr text, timezone text,
       payload jsonb, status text, priority smallint, max_retries integer, backoff_base_s double precision,
       backoff_cap_s double precision, backoff_jitter double precision, timeout_s double precision,
       concurrency_key text, concurrency_limit integer, misfire_policy text, misfire_grace_s integer,
       expand_from timestamptz)),
t AS (
INSERT INTO task (id, agent_id, title, description, schedule_kind, schedule_expr, timezone, payload, status,
                  priority, max_retries, backoff_base_s, backoff_cap_s, backoff_jitter, timeout_s,
                  concurrency_key, concurrency_limit, misfire_policy, misfire_grace_s)
SELECT r.id, :agent_id, r.title, r.description, r.schedule_kind, r.schedule_expr, r.timezone, r.payload,
       r.status, r.priority, r.max_retries, r.backoff_base_s, r.backoff_cap_s, r.backoff_jitter, r.timeout_s,
       r.concurrency_key, r.concurrency_limit, r.misfire_policy, r.misfire_grace_s
  FROM r)
INSERT INTO task_expansion (task_id, expand_from)
SELECT id, expand_from FROM r WHERE expand_from IS NOT NULL;

-- get_tasks --
-- Tasks by id (those just created by a batch), any owner.
SELECT * FROM task WHERE id = ANY(CAST(:ids AS uuid[]));
