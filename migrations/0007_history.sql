-- Run history that reads as history, and names that say what they hold.
--
-- 1. task.next_fire_at held the scheduler's place in a schedule (the first instant it has not yet
--    written to due_work, which is after everything written ahead), not the next occurrence. It is
--    renamed expand_from; the API's next_fire_at is now the next occurrence, computed from the
--    schedule (scheduler/task_document.py).
-- 2. Listings of runs are ordered by scheduled time, newest first (store/runs.sql list_runs), and
--    need indexes in that order.
-- 3. A run keeps its run_now parameters in its history, so a dead run can be retried as it ran.
-- 4. Migrations are immutable once applied, so the index comments of 0001 that name statements
--    since renamed are corrected here, in the database's own comments (\d+ shows them).

ALTER TABLE task RENAME COLUMN next_fire_at TO expand_from;
ALTER INDEX task_next_fire_idx RENAME TO task_expand_from_idx;
COMMENT ON COLUMN task.expand_from IS
    'The scheduler''s place: its next expansion starts here (NULL: nothing to expand). Creation and '
    'resume set it to now; each tick moves it to the first occurrence after the horizon it wrote.';
COMMENT ON INDEX task_expand_from_idx IS
    'scheduler/queries.sql due_tasks: active time-based tasks whose expansion point enters the horizon.';

-- The run_now parameters of a run (due_work.params), copied when the run ends.
ALTER TABLE task_run ADD COLUMN params jsonb;

-- store/runs.sql list_runs: history of every task, newest scheduled first (the final row of each run).
CREATE INDEX task_run_history_idx ON task_run (scheduled_for DESC, run_id DESC) WHERE final;
-- store/runs.sql list_runs for one task; store/tasks.sql delete_task_history.
DROP INDEX task_run_task_idx;
CREATE INDEX task_run_task_idx ON task_run (task_id, scheduled_for DESC, run_id DESC);
-- store/runs.sql list_runs with state=dead (`ordo runs --failed`): dead runs are rare, so this
-- index costs nothing on the hot path.
DROP INDEX task_run_dead_idx;
CREATE INDEX task_run_dead_idx ON task_run (scheduled_for DESC, run_id DESC) WHERE state = 'dead';

COMMENT ON INDEX task_run_history_idx IS 'store/runs.sql list_runs: history newest scheduled first.';
COMMENT ON INDEX task_run_task_idx IS
    'store/runs.sql list_runs filtered by task; store/tasks.sql delete_task_history.';
COMMENT ON INDEX task_run_dead_idx IS 'store/runs.sql list_runs filtered by state dead.';
COMMENT ON INDEX task_agent_idx IS 'store/tasks.sql list_tasks: an agent''s tasks, newest first.';
COMMENT ON INDEX event_created_idx IS 'store/events.sql list_events: newest first.';
COMMENT ON INDEX due_work_ready_idx IS
    'workers/queries.sql claim_batch and next_due_at: due unkeyed work per priority, earliest first.';
COMMENT ON INDEX due_work_ready_keyed_idx IS
    'workers/queries.sql keys_ready and lease_keyed: due work under a concurrency key.';
