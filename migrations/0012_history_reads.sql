-- Performance (issue #15): a page of GET /runs reads about a page of rows, whatever others have run and
-- whatever is written ahead.
--
-- GET /runs for one agent walked everyone's history newest first (task_run_history_idx) and looked up
-- each run's task to keep the agent's own: a page cost what the walk had to pass over. An agent with
-- 20 runs behind another's 300,000 waited 650 ms a page. Each history row now carries its owner
-- (a task never changes hands), and task_run_owner_idx lists one agent's ended runs in page order.
-- Every statement that records history copies the owner from the run's task, which exists: a run
-- leaves the queue in the statement that records it, and a task's deletion waits for that statement.

ALTER TABLE task_run ADD COLUMN agent_id uuid;

UPDATE task_run r SET agent_id = t.agent_id FROM task t WHERE t.id = r.task_id;

-- NOT VALID: history recorded from now on has its owner; a row whose task was gone before this
-- migration (there should be none) keeps none, and only admins list it.
ALTER TABLE task_run ADD CONSTRAINT task_run_agent_id_recorded CHECK (agent_id IS NOT NULL) NOT VALID;

CREATE INDEX task_run_owner_idx ON task_run (agent_id, scheduled_for DESC, run_id DESC) WHERE final;

COMMENT ON INDEX task_run_owner_idx IS 'store/runs.sql list_runs: one agent''s history newest scheduled first.';

-- The pending runs GET /runs lists (running, backing off, or due) were all due at a time not after
-- now, so the page walks back from now over this index. It read all of due_work before: 150,000
-- occurrences written ahead by 100,000 schedules added 10 ms to every page, a backlog of 100,000 due
-- runs 250 ms for their owner. The price: one more index entry per run written and per lease (a first tick writing
-- 150,000 runs took 0.2 s longer, 2.9 s against 2.7 s; the drain rates did not move beyond noise).
CREATE INDEX due_work_history_idx ON due_work (scheduled_for DESC, id DESC);

COMMENT ON INDEX due_work_history_idx IS 'store/runs.sql list_runs: pending runs newest scheduled first.';
