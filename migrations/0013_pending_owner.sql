-- Performance (issue #15): a run carries its owner from the moment it is queued.
--
-- GET /runs and GET /runs/upcoming for one agent kept the agent's pending runs by looking up each
-- run's task as the walk passed it (2.5 µs a run): while another agent had a backlog of 100,000 due
-- runs, an agent with a few waited 250 ms a page. The owner is now on the queue row (a task never
-- changes hands), compared where it lies; and the history row a run leaves takes it from there
-- instead of looking up the task.

ALTER TABLE due_work ADD COLUMN agent_id uuid;

UPDATE due_work d SET agent_id = t.agent_id FROM task t WHERE t.id = d.task_id;

ALTER TABLE due_work ALTER COLUMN agent_id SET NOT NULL;

-- The statement's tasks are looked up (and locked) once each as before, now by task and owner: a run
-- queued under another owner than its task's is refused like a run of a missing task is.
CREATE OR REPLACE FUNCTION due_work_check_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    present bigint;
    missing uuid;
    owner uuid;
BEGIN
    SELECT count(*), count(t.id) INTO wanted, present
      FROM (SELECT DISTINCT task_id, agent_id FROM inserted) i
      LEFT JOIN LATERAL (SELECT id FROM task WHERE id = i.task_id AND agent_id = i.agent_id FOR KEY SHARE) t
        ON true;
    IF present < wanted THEN
        SELECT i.task_id, t.agent_id INTO missing, owner
          FROM inserted i
          LEFT JOIN task t ON t.id = i.task_id
         WHERE t.agent_id IS DISTINCT FROM i.agent_id
         LIMIT 1;
        IF owner IS NULL THEN
            RAISE EXCEPTION USING
                MESSAGE = 'insert or update on table "due_work" violates foreign key constraint "due_work_task_id_fkey"',
                ERRCODE = 'foreign_key_violation', TABLE = 'due_work', CONSTRAINT = 'due_work_task_id_fkey',
                DETAIL = 'Key (task_id)=(' || missing || ') is not present in table "task".';
        END IF;
        RAISE EXCEPTION USING
            MESSAGE = 'a run''s agent_id must be its task''s owner',
            ERRCODE = 'check_violation', TABLE = 'due_work', CONSTRAINT = 'due_work_agent_id_owner',
            DETAIL = 'Task ' || missing || ' belongs to agent ' || owner || '.';
    END IF;
    RETURN NULL;
END $$;

COMMENT ON COLUMN due_work.agent_id IS
    'The run''s owner, its task''s agent: checked per statement by due_work_check_task (migration 0013).';
