-- Performance (issue #15): the scheduler's place in each schedule moves out of the task row into a
-- narrow table of its own.
--
-- Every tick moves the place of each task it expanded (scheduler/queries.sql advance_tasks). In the task
-- row that was an update of a wide row with four indexes, never HOT (the place is indexed): a first
-- tick over 100,000 tasks spent about 2 s on it. A task_expansion row is 40 bytes with two indexes.
--
-- A row exists while there is something to expand: for an active time-based task. That rule was a
-- CHECK on task.expand_from; it is now the foreign key on (task_id, expandable): task.expandable says
-- whether the task may have a row, and task_expansion.expandable must be true. A task that stops being
-- expandable (paused, canceled, made manual) while it has a row is refused, so the store withdraws the
-- row first (store/tasks.sql clear_expansion); deleting the task deletes its row.

ALTER TABLE task
    ADD COLUMN expandable boolean NOT NULL
        GENERATED ALWAYS AS (status = 'active' AND schedule_kind IN ('cron', 'rrule', 'once')) STORED,
    ADD CONSTRAINT task_expandable_key UNIQUE (id, expandable);

CREATE TABLE task_expansion (
    task_id     uuid PRIMARY KEY,
    expandable  boolean NOT NULL DEFAULT true CHECK (expandable),
    -- The first instant not yet written to due_work: the next expansion starts here.
    expand_from timestamptz NOT NULL,
    FOREIGN KEY (task_id, expandable) REFERENCES task (id, expandable) ON DELETE CASCADE ON UPDATE CASCADE
);

INSERT INTO task_expansion (task_id, expand_from)
SELECT id, expand_from FROM task WHERE expand_from IS NOT NULL;

CREATE INDEX task_expansion_due_idx ON task_expansion (expand_from);

-- Goes with task_expand_from_idx and the CHECK that named it.
ALTER TABLE task DROP COLUMN expand_from;

COMMENT ON TABLE task_expansion IS
    'The scheduler''s place in each active time-based task''s schedule (one row per such task).';
COMMENT ON COLUMN task_expansion.expand_from IS
    'The scheduler''s place: its next expansion starts here. Creation and resume set it to now; each '
    'tick moves it to the first occurrence after the horizon it wrote.';
COMMENT ON COLUMN task.expandable IS
    'Whether the task may have a task_expansion row (active and time-based); see that foreign key.';
COMMENT ON INDEX task_expansion_due_idx IS
    'scheduler/queries.sql due_tasks: tasks whose expansion point enters the horizon.';
