-- A task's id may change while no run refers to it, as due_work_task_id_fkey allowed: migration 0010's
-- task_id_fixed refused every change of a task's id, where the key refused only those that would orphan
-- runs (tests give tasks chosen ids this way). A run's task_id still never changes.

CREATE FUNCTION refuse_referenced_task_id_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM due_work WHERE task_id = OLD.id) THEN
        RAISE EXCEPTION USING
            MESSAGE = 'update on table "task" violates foreign key constraint "due_work_task_id_fkey" on table "due_work"',
            ERRCODE = 'foreign_key_violation', TABLE = 'task', CONSTRAINT = 'due_work_task_id_fkey',
            DETAIL = 'Key (id)=(' || OLD.id || ') is still referenced from table "due_work".';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER task_id_fixed ON task;
CREATE TRIGGER task_id_fixed BEFORE UPDATE OF id ON task
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION refuse_referenced_task_id_change();
