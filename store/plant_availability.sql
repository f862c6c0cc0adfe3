-- Generated availability: writing a generation (COPY, then a diff against the stored range when it
-- held rows), reading shifts and day totals, and the change log.

-- begin_generation --
-- The generation's row; its id stamps every row it writes. Generations of one plant are serialised
-- by plant_lock, so their ids rise in commit order and `since=<id>` misses none.
INSERT INTO availability_generation (agent_id, start_date, end_date, requested, regenerate, run_id)
VALUES (:agent_id, :start, :end, CAST(:requested AS text[]), :regenerate, :run_id)
RETURNING id;

-- range_has_rows --
-- Does the range hold anything for these resources? (No: the generation writes straight into
-- availability and every row is new.) One probe of the primary key per resource.
SELECT EXISTS (
    SELECT 1 FROM availability
     WHERE resource_id = ANY(CAST(:resource_ids AS uuid[])) AND shift_date BETWEEN :start AND :end);

-- create_stage --
-- A regeneration first COPYs its rows here (no WAL, no index, gone at commit), then compares them
-- with the stored range.
CREATE TEMP TABLE availability_stage (LIKE availability) ON COMMIT DROP;

-- diff_memory --
-- The diff hashes one side of the comparison: 64 MB keeps a year of a thousand machines in memory
-- (the default 4 MB spills it to disk in batches, about twice as slow); larger ranges still spill,
-- so the backend's memory stays bounded. Ends with the transaction.
SET LOCAL work_mem = '64MB';

-- diff_stage --
-- One pass over the staged rows and the stored range (a full join on the primary key's columns):
-- starts only the stage has (added), only the store has (removed), or both with other values
-- (changed). Rows the new generation reproduces exactly are left out, so this is usually small.
CREATE TEMP TABLE availability_diff ON COMMIT DROP AS
SELECT coalesce(s.resource_id, a.resource_id) AS resource_id,
       coalesce(s.shift_date, a.shift_date) AS shift_date,
       coalesce(s.starts_at, a.starts_at) AS starts_at,
       CASE WHEN a.resource_id IS NULL THEN 'added'
            WHEN s.resource_id IS NULL THEN 'removed'
            ELSE 'changed' END AS change
  FROM availability_stage s
  FULL JOIN (SELECT * FROM availability
              WHERE resource_id = ANY(CAST(:resource_ids AS uuid[])) AND shift_date BETWEEN :start AND :end) a
    ON a.resource_id = s.resource_id AND a.shift_date = s.shift_date AND a.starts_at = s.starts_at
 WHERE a.resource_id IS NULL OR s.resource_id IS NULL
    OR (s.ends_at, s.shift_code, s.crew, s.status, s.capacity_pct, s.exception_id, s.note)
       IS DISTINCT FROM (a.ends_at, a.shift_code, a.crew, a.status, a.capacity_pct, a.exception_id, a.note);

-- diff_empty_days --
-- regenerate off: the diff is the staged rows on days that hold no stored row yet (all added);
-- nothing stored changes.
CREATE TEMP TABLE availability_diff ON COMMIT DROP AS
SELECT s.resource_id, s.shift_date, s.starts_at, 'added' AS change
  FROM availability_stage s
 WHERE NOT EXISTS (
       SELECT 1 FROM availability a WHERE a.resource_id = s.resource_id AND a.shift_date = s.shift_date);

-- analyze_diff --
-- Statistics for the two statements that apply the diff (a temporary table has none until
-- analysed): a few probes of the primary key when it is small, a hash join when it is not.
ANALYZE availability_diff;

-- remove_stale --
-- Stored rows the new generation does not reproduce exactly (removed, or changed: the new version
-- follows in add_changed) leave availability; their old values go to the change log. Unchanged rows
-- stay as they are, with the generation that wrote them.
WITH gone AS (
    DELETE FROM availability a
     USING availability_diff d
     WHERE d.change <> 'added'
       AND a.resource_id = d.resource_id AND a.shift_date = d.shift_date AND a.starts_at = d.starts_at
    RETURNING a.*)
INSERT INTO availability_change (generation_id, resource_id, starts_at, shift_date, change, old)
SELECT :generation_id, resource_id, starts_at, shift_date, 'removed',
       plant_shift_json(shift_date, starts_at, ends_at, shift_code, crew, status, capacity_pct,
                        exception_id, note)
  FROM gone;

-- add_changed --
-- The staged rows of the diff go in; a start that remove_stale logged as removed becomes a change.
WITH born AS (
    INSERT INTO availability (resource_id, shift_date, starts_at, ends_at, shift_code, crew, status,
                              capacity_pct, exception_id, note, generation_id)
    SELECT s.resource_id, s.shift_date, s.starts_at, s.ends_at, s.shift_code, s.crew, s.status,
           s.capacity_pct, s.exception_id, s.note, :generation_id
      FROM availability_stage s
      JOIN availability_diff d
        ON d.resource_id = s.resource_id AND d.shift_date = s.shift_date AND d.starts_at = s.starts_at
     WHERE d.change <> 'removed'
    RETURNING *)
INSERT INTO availability_change AS c (generation_id, resource_id, starts_at, shift_date, change, new)
SELECT :generation_id, resource_id, starts_at, shift_date, 'added',
       plant_shift_json(shift_date, starts_at, ends_at, shift_code, crew, status, capacity_pct,
                        exception_id, note)
  FROM born
ON CONFLICT (generation_id, resource_id, starts_at) DO UPDATE SET change = 'changed', new = EXCLUDED.new;

-- summarise_changes --
-- Per resource, what the regeneration changed.
INSERT INTO availability_change_summary (generation_id, resource_id, added, removed, changed)
SELECT :generation_id, resource_id,
       count(*) FILTER (WHERE change = 'added'),
       count(*) FILTER (WHERE change = 'removed'),
       count(*) FILTER (WHERE change = 'changed')
  FROM availability_change
 WHERE generation_id = :generation_id
 GROUP BY resource_id;

-- record_fresh_summary --
-- A fresh range: every row of each resource was added.
INSERT INTO availability_change_summary (generation_id, resource_id, added)
SELECT :generation_id, c.resource_id, c.added
  FROM unnest(CAST(:resource_ids AS uuid[]), CAST(:added AS integer[])) AS c(resource_id, added)
 WHERE c.added > 0;

-- finish_generation --
UPDATE availability_generation g
   SET resources = :resources, rows = :rows, fresh = :fresh, duration_s = :duration_s,
       added = t.added, removed = t.removed, changed = t.changed, resources_changed = t.resources
  FROM (SELECT coalesce(sum(added), 0) AS added, coalesce(sum(removed), 0) AS removed,
               coalesce(sum(changed), 0) AS changed, count(*) AS resources
          FROM availability_change_summary WHERE generation_id = :generation_id) AS t
 WHERE g.id = :generation_id
RETURNING g.*;

-- top_changes --
-- The resources a generation changed most, for the tool's capped output.
SELECT s.resource_id, r.code, s.added, s.removed, s.changed
  FROM availability_change_summary s
  LEFT JOIN resource r ON r.id = s.resource_id
 WHERE s.generation_id = :generation_id
 ORDER BY s.added + s.removed + s.changed DESC, r.code
 LIMIT :limit;

-- day_totals --
-- Per resource and date: planned hours and hours by status, capacity-weighted hours, the holiday.
SELECT resource_id, shift_date,
       sum(extract(epoch FROM ends_at - starts_at)) / 3600 AS planned_hours,
       coalesce(sum(extract(epoch FROM ends_at - starts_at)) FILTER (WHERE status = 'available'), 0) / 3600
           AS operating_hours,
       coalesce(sum(extract(epoch FROM ends_at - starts_at)) FILTER (WHERE status = 'maintenance'), 0) / 3600
           AS maintenance_hours,
       coalesce(sum(extract(epoch FROM ends_at - starts_at)) FILTER (WHERE status = 'holiday'), 0) / 3600
           AS holiday_hours,
       coalesce(sum(extract(epoch FROM ends_at - starts_at))
                FILTER (WHERE status IN ('breakdown', 'shutdown', 'other')), 0) / 3600 AS other_down_hours,
       sum(extract(epoch FROM ends_at - starts_at) * capacity_pct) / 360000 AS capacity_hours,
       max(note) FILTER (WHERE status = 'holiday') AS holiday
  FROM availability
 WHERE resource_id = ANY(CAST(:resource_ids AS uuid[])) AND shift_date BETWEEN :start AND :end
 GROUP BY resource_id, shift_date
 ORDER BY resource_id, shift_date;

-- shift_rows --
-- The rows of these resources on these dates, in time order per resource (detail, CSV, solver
-- calendars); read through a server-side cursor so a large range streams.
SELECT resource_id, shift_date, starts_at, ends_at, shift_code, crew, status, capacity_pct,
       exception_id, note, generation_id
  FROM availability
 WHERE resource_id = ANY(CAST(:resource_ids AS uuid[])) AND shift_date BETWEEN :start AND :end
 ORDER BY resource_id, shift_date, starts_at;

-- list_generations --
-- A plant's generations after an id or an instant, oldest first (what changed since).
SELECT *
  FROM availability_generation
 WHERE (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
   AND id > coalesce(CAST(:after_id AS bigint), 0)
   AND (CAST(:after_time AS timestamptz) IS NULL OR created_at > CAST(:after_time AS timestamptz))
 ORDER BY id
 LIMIT :limit;

-- get_generation --
SELECT * FROM availability_generation
 WHERE id = :id AND (CAST(:owner AS uuid) IS NULL OR agent_id = :owner);

-- change_rows --
-- A regeneration's change log, shift by shift, a page at a time (keyset on the primary key).
SELECT c.resource_id, r.code, c.starts_at, c.shift_date, c.change, c.old, c.new
  FROM availability_change c
  LEFT JOIN resource r ON r.id = c.resource_id
 WHERE c.generation_id = :generation_id
   AND (CAST(:after_resource AS uuid) IS NULL
        OR (c.resource_id, c.starts_at) > (CAST(:after_resource AS uuid), CAST(:after_start AS timestamptz)))
 ORDER BY c.resource_id, c.starts_at
 LIMIT :limit;

-- fresh_rows --
-- A fresh generation's change set is its rows (those still stored): every one was added.
SELECT a.resource_id, r.code, a.starts_at, a.shift_date, 'added' AS change, CAST(NULL AS jsonb) AS old,
       plant_shift_json(a.shift_date, a.starts_at, a.ends_at, a.shift_code, a.crew, a.status,
                        a.capacity_pct, a.exception_id, a.note) AS new
  FROM availability_change_summary s
  JOIN availability a ON a.resource_id = s.resource_id
  LEFT JOIN resource r ON r.id = a.resource_id
 WHERE s.generation_id = :generation_id
   AND a.shift_date BETWEEN :start AND :end AND a.generation_id = :generation_id
   AND (CAST(:after_resource AS uuid) IS NULL
        OR (a.resource_id, a.starts_at) > (CAST(:after_resource AS uuid), CAST(:after_start AS timestamptz)))
 ORDER BY a.resource_id, a.starts_at
 LIMIT :limit;

-- copy_rows --
-- A fresh range's rows, straight into availability (binary COPY; see store.plant_availability).
COPY availability (resource_id, shift_date, starts_at, ends_at, shift_code, crew, status, capacity_pct,
                   exception_id, note, generation_id) FROM STDIN (FORMAT BINARY);

-- copy_stage --
-- A regeneration's rows, into the stage table first.
COPY availability_stage (resource_id, shift_date, starts_at, ends_at, shift_code, crew, status,
                         capacity_pct, exception_id, note, generation_id) FROM STDIN (FORMAT BINARY);

-- prune_generations --
-- Retention: generations recorded before the cutoff go, with their change logs and summaries (ON
-- DELETE CASCADE), oldest first and a few per statement (one generation's log may hold a row per
-- shift it changed). Each plant keeps its latest generation whatever its age, so "what did the last
-- generation change" always has an answer. The generated rows stay: they are the availability.
-- Ids rise with time, so the scan in id order (primary key) stops at the first young generation.
WITH old AS (
    SELECT g.id
      FROM availability_generation g
     WHERE g.created_at < :cutoff
       AND g.id < (SELECT max(l.id) FROM availability_generation l WHERE l.agent_id = g.agent_id)
     ORDER BY g.id
     LIMIT :n)
DELETE FROM availability_generation g USING old WHERE g.id = old.id
RETURNING g.id;

-- latest_generation --
SELECT * FROM availability_generation
 WHERE (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
 ORDER BY id DESC
 LIMIT 1;

-- snapshot --
-- A read that takes several statements (totals, then shifts) sees one snapshot: a generation
-- committing in between cannot show half old, half new. First statement of the transaction.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
