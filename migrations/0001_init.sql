-- Ordo core schema: agents, tasks, events, the due_work queue (one row per run), task_run (one row
-- per attempt), workers and the scheduler leader. Constraints make bad states unrepresentable.

CREATE TABLE agent (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- The operator at the host: tasks added with the CLI belong to it.
INSERT INTO agent (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'local');

CREATE TABLE task (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id          uuid NOT NULL REFERENCES agent (id),
    title             text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description       text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    schedule_kind     text NOT NULL CHECK (schedule_kind IN ('cron', 'rrule', 'once', 'event', 'manual')),
    schedule_expr     text NOT NULL DEFAULT '',
    timezone          text NOT NULL DEFAULT 'UTC',
    payload           jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'canceled')),
    priority          smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 9),
    max_retries       integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    backoff_base_s    double precision NOT NULL DEFAULT 2 CHECK (backoff_base_s > 0),
    backoff_cap_s     double precision NOT NULL DEFAULT 600 CHECK (backoff_cap_s >= backoff_base_s),
    backoff_jitter    double precision NOT NULL DEFAULT 0.2 CHECK (backoff_jitter BETWEEN 0 AND 1),
    timeout_s         double precision NOT NULL DEFAULT 3600 CHECK (timeout_s > 0),
    concurrency_key   text CHECK (length(concurrency_key) BETWEEN 1 AND 200),
    concurrency_limit integer NOT NULL DEFAULT 1 CHECK (concurrency_limit >= 1),
    misfire_policy    text NOT NULL DEFAULT 'run_once' CHECK (misfire_policy IN ('run_once', 'skip', 'run_all')),
    misfire_grace_s   integer NOT NULL DEFAULT 3600 CHECK (misfire_grace_s >= 0),
    -- Lower bound of the next occurrence not yet written to due_work; NULL: nothing left to expand.
    -- Creation and resume set it to "now"; the scheduler tightens it to the exact next occurrence.
    next_fire_at      timestamptz,
    -- Bumped by every change; workers cache compiled pipelines by (id, version).
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((schedule_kind = 'manual') = (schedule_expr = '')),
    CHECK (next_fire_at IS NULL OR (status = 'active' AND schedule_kind IN ('cron', 'rrule', 'once')))
);

-- scheduler.due_tasks: active time-based tasks whose next occurrence falls inside the horizon.
CREATE INDEX task_next_fire_idx ON task (next_fire_at) WHERE next_fire_at IS NOT NULL;
-- store.events.publish: active tasks subscribed to a topic.
CREATE INDEX task_topic_idx ON task (schedule_expr) WHERE schedule_kind = 'event' AND status = 'active';
-- store.tasks.list: an agent's tasks, newest first.
CREATE INDEX task_agent_idx ON task (agent_id, created_at DESC, id DESC);

CREATE TABLE event (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id        uuid NOT NULL REFERENCES agent (id),
    topic           text NOT NULL CHECK (topic ~ '^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$'),
    payload         jsonb NOT NULL DEFAULT '{}',
    matched_tasks   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- store.events.list: newest first.
CREATE INDEX event_created_idx ON event (created_at DESC, id);

-- The queue: one row per pending run (queued, running, or failed and waiting for its retry), whether
-- a scheduled occurrence, a run_now or an event trigger. When a run ends (succeeded, dead, canceled,
-- skipped) its row moves to task_run in the same statement, so the queue stays small and finishing
-- a run costs a delete and an insert, not an update that rewrites every index.
CREATE TABLE due_work (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id           uuid NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    origin            text NOT NULL CHECK (origin IN ('schedule', 'manual', 'event')),
    scheduled_for     timestamptz NOT NULL,
    run_at            timestamptz NOT NULL,
    priority          smallint NOT NULL CHECK (priority BETWEEN 1 AND 9),
    state             text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    concurrency_key   text,
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    event_id          uuid REFERENCES event (id) ON DELETE SET NULL,
    params            jsonb,  -- run_now overrides merged over the task's params
    lease_token       uuid,
    lease_until       timestamptz,
    worker_id         text,
    cancel_requested  boolean NOT NULL DEFAULT false,
    last_error        jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    -- A lease exists exactly while the run is running.
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt <= max_attempts),
    CHECK ((state = 'queued') = (attempt = 0)),
    CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL))
);

-- One pending occurrence per task and instant (task_run_occurrence_uq covers finished ones): two
-- schedulers or a re-run tick add nothing twice.
CREATE UNIQUE INDEX due_work_occurrence_uq ON due_work (task_id, scheduled_for) WHERE origin = 'schedule';
-- workers.lease_batch: ready unkeyed work, per priority, earliest first.
CREATE INDEX due_work_ready_idx ON due_work (priority, run_at, id)
    WHERE state IN ('queued', 'failed') AND concurrency_key IS NULL;
-- workers.keys_ready / lease_keyed: ready work under a concurrency key.
CREATE INDEX due_work_ready_keyed_idx ON due_work (concurrency_key, priority, run_at, id)
    WHERE state IN ('queued', 'failed') AND concurrency_key IS NOT NULL;
-- workers.lease_keyed: running count per concurrency key.
CREATE INDEX due_work_running_key_idx ON due_work (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
-- workers.rescue_expired: running leases by expiry.
CREATE INDEX due_work_lease_idx ON due_work (lease_until) WHERE state = 'running';
-- There is deliberately no index on due_work (task_id): it would be rewritten by every lease. The
-- per-task statements (pause, cancel, pending runs of a task) scan the pending queue instead.

-- Wake idle workers when work that is already due is enqueued. Future occurrences need no wake-up:
-- workers sleep until the earliest run_at they know of.
CREATE FUNCTION due_work_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE run_at <= now() AND state = 'queued') THEN
        PERFORM pg_notify('ordo_due_work', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER due_work_notify AFTER INSERT ON due_work
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION due_work_notify();

-- Run history: one row per attempt, keyed by (run_id, attempt) so an attempt is recorded once and a
-- fenced-out worker cannot add a second result for it. `final` marks the row that ended the run
-- (every state but failed). A run that ended without starting its attempt (canceled while waiting,
-- skipped by the misfire policy) has a final row with no started_at. The run-level columns are
-- copied from due_work so history stands alone once the queue row is gone.
-- No foreign key to task: its check would share-lock the task row from every worker's group commit.
-- Deleting a task deletes its history explicitly (store.tasks.delete).
CREATE TABLE task_run (
    run_id        bigint NOT NULL,
    attempt       integer NOT NULL CHECK (attempt >= 1),
    task_id       uuid NOT NULL,
    origin        text NOT NULL CHECK (origin IN ('schedule', 'manual', 'event')),
    scheduled_for timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    priority      smallint NOT NULL CHECK (priority BETWEEN 1 AND 9),
    max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
    event_id      uuid,
    state         text NOT NULL CHECK (state IN ('succeeded', 'failed', 'dead', 'canceled', 'skipped')),
    final         boolean NOT NULL,
    worker_id     text,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL,
    steps         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
    output        jsonb,
    error         jsonb,
    PRIMARY KEY (run_id, attempt),
    CHECK (final = (state <> 'failed')),
    CHECK (attempt <= max_attempts),
    CHECK (started_at IS NOT NULL OR state IN ('canceled', 'skipped')),
    CHECK (started_at IS NULL OR finished_at >= started_at)
);

-- store.runs.list by task (a task's finished runs, newest first); store.tasks.delete.
CREATE INDEX task_run_task_idx ON task_run (task_id, run_id DESC);
-- store.runs.list --failed: dead runs are rare, so this index costs nothing on the hot path.
CREATE INDEX task_run_dead_idx ON task_run (run_id DESC) WHERE state = 'dead';
-- One finished occurrence per task and instant (see due_work_occurrence_uq).
CREATE UNIQUE INDEX task_run_occurrence_uq ON task_run (task_id, scheduled_for) WHERE origin = 'schedule' AND final;

CREATE TABLE worker (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    concurrency   integer NOT NULL CHECK (concurrency >= 1),
    state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopping', 'stopped')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- Who leads the scheduler, for health checks. Leadership itself is a session advisory lock.
CREATE TABLE scheduler_leader (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scheduler_id  text NOT NULL,
    since         timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL
);
