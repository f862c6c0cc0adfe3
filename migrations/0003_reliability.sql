-- Reliability: the health of each worker's background loops (for /health/ready), and the recorded
-- size of each attempt (so run listings can leave large outputs out cheaply).

-- Written with every worker heartbeat: one entry per background loop (heartbeat, rescuer, listener,
-- completer), e.g. {"listener": {"ok": false, "age_s": 12.5, "error": "connection refused"}}.
-- store.status.liveness reports the failing ones of workers heard from recently.
ALTER TABLE worker ADD COLUMN loops jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(loops) = 'object');

-- Bytes of the attempt's record (steps, output, error) as the worker serialised it. store/runs.sql's
-- listing skips the per-output size check for attempts below its limit. NULL: recorded before this
-- column existed (the listing then checks every output).
ALTER TABLE task_run ADD COLUMN record_bytes integer CHECK (record_bytes >= 0);

-- A value as a run listing shows it: itself when its JSON text is at most :max_bytes, else a marker
-- with its size, {"truncated": true, "bytes": N}. The run's detail always shows the whole value.
CREATE FUNCTION ordo_listed_value(value jsonb, max_bytes integer) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL OR octet_length(value::text) <= max_bytes THEN value
                ELSE jsonb_build_object('truncated', true, 'bytes', octet_length(value::text)) END
$$;

-- A run's step records as a listing shows them: each step's output through ordo_listed_value.
CREATE FUNCTION ordo_listed_steps(steps jsonb, max_bytes integer) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_agg(CASE WHEN s ? 'output'
                                   THEN jsonb_set(s, '{output}', ordo_listed_value(s -> 'output', max_bytes))
                                   ELSE s END
                              ORDER BY i), '[]'::jsonb)
      FROM jsonb_array_elements(steps) WITH ORDINALITY AS e(s, i)
$$;
