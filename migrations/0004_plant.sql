-- Equipment availability: each agent's plant (the ISA-95 resource tree), its operating patterns,
-- pattern assignments, holiday calendars and exceptions, and the shift-level availability that
-- schedule.generate computes from them, with a record of what every generation changed.
-- An agent sees and changes only its own plant; composite foreign keys keep every reference inside
-- one agent's plant.

CREATE TABLE holiday_calendar (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id    uuid NOT NULL REFERENCES agent (id),
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    -- The checked document (country, subdivision, observed, dates, rules, description).
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, name)
);

CREATE TABLE resource (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agent (id),
    code                text NOT NULL CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    name                text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    level               text NOT NULL
                        CHECK (level IN ('enterprise', 'site', 'area', 'work_center', 'work_unit')),
    parent_id           uuid,
    -- Codes from the root down, joined by '/': kept by store.plant whenever the tree changes.
    path                text NOT NULL,
    requires_scheduling boolean NOT NULL,
    timezone            text,   -- NULL: the parent's (UTC at the top)
    holiday_calendar    text,   -- NULL: the parent's
    metadata            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, code),
    UNIQUE (agent_id, id),
    CHECK (parent_id IS DISTINCT FROM id),
    FOREIGN KEY (agent_id, parent_id) REFERENCES resource (agent_id, id),
    FOREIGN KEY (agent_id, holiday_calendar) REFERENCES holiday_calendar (agent_id, name)
        ON UPDATE CASCADE
);

-- The foreign key from children, and store.plant.delete_resource (refused while children exist).
CREATE INDEX resource_parent_idx ON resource (parent_id) WHERE parent_id IS NOT NULL;

-- Custom operating patterns (the built-ins live in code: engine/tools/shift_patterns.py). Their
-- names never shadow a built-in's.
CREATE TABLE operating_pattern (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id    uuid NOT NULL REFERENCES agent (id),
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, name)
);

-- Which pattern a resource follows from effective_from to effective_to (both included; NULL: open
-- ended). Among a resource's own assignments valid on a date, the latest effective_from wins; with
-- none, the parent's apply. `pattern` names a built-in or one of the agent's operating_pattern rows
-- (store.plant refuses deleting a pattern that is assigned).
CREATE TABLE pattern_assignment (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id        uuid NOT NULL REFERENCES agent (id),
    resource_id     uuid NOT NULL,
    pattern         text NOT NULL,
    effective_from  date NOT NULL,
    effective_to    date,
    anchor          date,   -- rotations count their cycle from here (NULL: effective_from)
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (resource_id, effective_from),
    CHECK (effective_to IS NULL OR effective_to >= effective_from),
    FOREIGN KEY (agent_id, resource_id) REFERENCES resource (agent_id, id) ON DELETE CASCADE
);

-- store.plant.load_plant and list_assignments: an agent's assignments.
CREATE INDEX pattern_assignment_agent_idx ON pattern_assignment (agent_id, resource_id);

-- Maintenance windows, breakdowns, shutdowns: one window, or one per RRULE occurrence (each as long
-- as the first). They apply to the resource and everything under it.
CREATE TABLE availability_exception (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id      uuid NOT NULL REFERENCES agent (id),
    resource_id   uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('maintenance', 'breakdown', 'shutdown', 'other')),
    impact        text NOT NULL CHECK (impact IN ('no_operation', 'reduced')),
    capacity_pct  smallint NOT NULL CHECK (capacity_pct BETWEEN 0 AND 99),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    rrule         text,
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK ((impact = 'no_operation') = (capacity_pct = 0)),
    FOREIGN KEY (agent_id, resource_id) REFERENCES resource (agent_id, id) ON DELETE CASCADE
);

-- An import that lists the same exception again changes nothing (store.plant.upsert_exception).
CREATE UNIQUE INDEX availability_exception_natural_uq
    ON availability_exception (resource_id, kind, starts_at, coalesce(rrule, ''));
-- store.plant.load_plant and list_exceptions: an agent's exceptions.
CREATE INDEX availability_exception_agent_idx ON availability_exception (agent_id, resource_id);

-- One row per schedule.generate call that stored something.
CREATE TABLE availability_generation (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id     uuid NOT NULL REFERENCES agent (id),
    start_date   date NOT NULL,
    end_date     date NOT NULL,
    requested    text[],          -- the resource ids or codes asked for; NULL: every resource
    resources    integer NOT NULL DEFAULT 0,
    rows         bigint NOT NULL DEFAULT 0,
    added        bigint NOT NULL DEFAULT 0,
    removed      bigint NOT NULL DEFAULT 0,
    changed      bigint NOT NULL DEFAULT 0,
    resources_changed integer NOT NULL DEFAULT 0,
    -- The range held nothing for these resources before: every row is new, and the rows themselves
    -- (availability.generation_id) are the change set, so none are copied to availability_change.
    fresh        boolean NOT NULL DEFAULT false,
    regenerate   boolean NOT NULL DEFAULT true,
    run_id       bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    duration_s   double precision,
    CHECK (end_date >= start_date)
);

-- store.plant_availability.list_generations: an agent's generations after a given id or time.
CREATE INDEX availability_generation_agent_idx ON availability_generation (agent_id, id);

-- The generated shifts: one row per shift, or per piece of a shift that an exception cut. A row
-- belongs to the date its shift starts on (the resource's local date). No foreign key to resource:
-- its check would cost an index probe for every row COPY writes; store.plant.delete_resource
-- removes a resource's rows itself.
CREATE TABLE availability (
    resource_id    uuid NOT NULL,
    shift_date     date NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    shift_code     text NOT NULL,
    crew           text,
    status         text NOT NULL
                   CHECK (status IN ('available', 'holiday', 'maintenance', 'breakdown', 'shutdown', 'other')),
    capacity_pct   smallint NOT NULL CHECK (capacity_pct BETWEEN 0 AND 100),
    exception_id   uuid,
    note           text,          -- the holiday's name, or the exception's description
    generation_id  bigint NOT NULL,
    -- Serves every read (a resource's rows over a date range: the API, solver calendars) and the
    -- replacement of a range by schedule.generate.
    PRIMARY KEY (resource_id, shift_date, starts_at),
    CHECK (ends_at > starts_at)
);

-- What a regeneration changed, shift by shift, keyed by the shift's start: added (new values),
-- removed (old values) or changed (both).
CREATE TABLE availability_change (
    generation_id  bigint NOT NULL REFERENCES availability_generation (id) ON DELETE CASCADE,
    resource_id    uuid NOT NULL,
    starts_at      timestamptz NOT NULL,
    shift_date     date NOT NULL,
    change         text NOT NULL CHECK (change IN ('added', 'removed', 'changed')),
    old            jsonb,
    new            jsonb,
    PRIMARY KEY (generation_id, resource_id, starts_at)
);

-- Per generation and resource, how many shifts were added, removed, changed.
CREATE TABLE availability_change_summary (
    generation_id  bigint NOT NULL REFERENCES availability_generation (id) ON DELETE CASCADE,
    resource_id    uuid NOT NULL,
    added          integer NOT NULL DEFAULT 0,
    removed        integer NOT NULL DEFAULT 0,
    changed        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (generation_id, resource_id)
);

-- POST /schedules/generate queues a run of this task: the agent's generate task, created on first
-- use. Deleting the task forgets it (the next request creates a new one).
CREATE TABLE plant_generate_task (
    agent_id  uuid PRIMARY KEY REFERENCES agent (id),
    task_id   uuid NOT NULL UNIQUE REFERENCES task (id) ON DELETE CASCADE
);

-- A shift row as JSON, for the change log and the API: one shape wherever a row leaves the table.
CREATE FUNCTION plant_shift_json(shift_date date, starts_at timestamptz, ends_at timestamptz,
                                 shift_code text, crew text, status text, capacity_pct smallint,
                                 exception_id uuid, note text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'date', shift_date,
        'start', to_char(starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'end', to_char(ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'hours', round(CAST(extract(epoch FROM ends_at - starts_at) / 3600 AS numeric), 4),
        'shift_code', shift_code, 'crew', crew, 'status', status, 'capacity_pct', capacity_pct,
        'exception_id', exception_id, 'note', note)
$$;
