-- Performance (issue #15): an agent's history is read in its own order, whatever others have run.
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
