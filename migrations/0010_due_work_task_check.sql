-- Performance (issue #15): a run's task is checked once per statement, not once per run.
--
-- due_work.task_id was a foreign key to task (ON DELETE CASCADE). PostgreSQL checks a foreign key with
-- one lookup per inserted row (about 7 µs each): a first tick over 100,000 tasks writes 150,000 runs,
-- and their checks took 1 s of its 4. The triggers below keep each of the key's guarantees, set-wise:
-- - a run is written only for a task that exists, and the task stays until the writer commits: the
--   statement's tasks are looked up once each and locked FOR KEY SHARE, as the key's check locks them.
--   A delete of one of them then waits for the writer and deletes what it wrote (below); one that
--   committed first makes the writer fail (foreign_key_violation, under the key's name, as before);
-- - deleting a task deletes its pending runs (the cascade), in one statement however many tasks go;
--   truncating task empties due_work;
-- - neither a run's task_id nor a task's id changes (the key refused orphaning changes).
-- The cascade reads due_work with a fresh snapshot, which READ COMMITTED gives each statement: a delete
-- under a transaction snapshot (REPEATABLE READ, SERIALIZABLE) could miss runs committed after it
-- began, and is refused. The store deletes tasks in READ COMMITTED.

ALTER TABLE due_work DROP CONSTRAINT due_work_task_id_fkey;

CREATE FUNCTION due_work_check_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    present bigint;
    missing uuid;
BEGIN
    SELECT count(*), count(t.id) INTO wanted, present
      FROM (SELECT DISTINCT task_id FROM inserted) i
      LEFT JOIN LATERAL (SELECT id FROM task WHERE id = i.task_id FOR KEY SHARE) t ON true;
    IF present < wanted THEN
        SELECT task_id INTO missing FROM inserted i WHERE NOT EXISTS (SELECT FROM task WHERE id = i.task_id);
        RAISE EXCEPTION USING
            MESSAGE = 'insert or update on table "due_work" violates foreign key constraint "due_work_task_id_fkey"',
            ERRCODE = 'foreign_key_violation', TABLE = 'due_work', CONSTRAINT = 'due_work_task_id_fkey',
            DETAIL = 'Key (task_id)=(' || missing || ') is not present in table "task".';
    END IF;
    RETURN NULL;
END $$;

-- Named to run before due_work_notify (triggers of one event run in name order): a refused statement
-- wakes nobody.
CREATE TRIGGER due_work_check_task AFTER INSERT ON due_work
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION due_work_check_task();

CREATE FUNCTION task_delete_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'tasks are deleted in READ COMMITTED transactions only'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Their pending runs are found with a fresh snapshot (migration 0010).';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM due_work;
    ELSE
        DELETE FROM due_work d USING gone g WHERE d.task_id = g.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER task_delete_runs AFTER DELETE ON task
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION task_delete_runs();
CREATE TRIGGER task_truncate_runs AFTER TRUNCATE ON task
    FOR EACH STATEMENT EXECUTE FUNCTION task_delete_runs();

CREATE FUNCTION refuse_task_id_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = TG_TABLE_NAME || '.' || TG_ARGV[0] || ' does not change',
        ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME, CONSTRAINT = 'due_work_task_id_fkey';
END $$;

CREATE TRIGGER due_work_task_id_fixed BEFORE UPDATE OF task_id ON due_work
    FOR EACH ROW WHEN (OLD.task_id IS DISTINCT FROM NEW.task_id)
    EXECUTE FUNCTION refuse_task_id_change('task_id');
CREATE TRIGGER task_id_fixed BEFORE UPDATE OF id ON task
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION refuse_task_id_change('id');

COMMENT ON COLUMN due_work.task_id IS
    'The run''s task: checked and locked per statement by due_work_check_task, its runs deleted with it '
    'by task_delete_runs (migration 0010; a foreign key checked each row).';
