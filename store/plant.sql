-- The plant model: resources (the ISA-95 tree), custom operating patterns, pattern assignments,
-- holiday calendars and exceptions. Statements are scoped to one agent's plant; reads take
-- :owner, NULL for admins (who see every plant).

-- plant_lock --
-- One writer per plant at a time: an import validates against the plant as it is, and a generation
-- diffs against stored rows; both hold this lock until they commit, so neither works from a stale
-- picture and two generations never interleave their writes.
SELECT pg_advisory_xact_lock(7420040, hashtext(CAST(:agent_id AS text)));

-- resources_of_agent --
-- Every resource of a plant with its parent's code (imports validate against the merged tree;
-- generation loads the tree). Plants are thousands of rows, not millions.
SELECT r.*, p.code AS parent_code
  FROM resource r
  LEFT JOIN resource p ON p.id = r.parent_id
 WHERE r.agent_id = :agent_id
 ORDER BY r.path;

-- list_resources --
-- A page of resources in tree order (path, id), optionally one level or one subtree.
SELECT r.*, p.code AS parent_code
  FROM resource r
  LEFT JOIN resource p ON p.id = r.parent_id
 WHERE (CAST(:owner AS uuid) IS NULL OR r.agent_id = :owner)
   AND (CAST(:level AS text) IS NULL OR r.level = :level)
   AND (CAST(:under AS text) IS NULL OR r.path = :under OR r.path LIKE :under || '/%')
   AND (CAST(:after_path AS text) IS NULL
        OR (r.path, r.id) > (CAST(:after_path AS text), CAST(:after_id AS uuid)))
 ORDER BY r.path, r.id
 LIMIT :limit;

-- resources_by_ref --
-- Resources named by id (in any plant the caller may see) or by code (in the caller's own plant).
SELECT r.*, p.code AS parent_code
  FROM resource r
  LEFT JOIN resource p ON p.id = r.parent_id
 WHERE (r.id = ANY(CAST(:ids AS uuid[])) AND (CAST(:owner AS uuid) IS NULL OR r.agent_id = :owner))
    OR (r.agent_id = :agent_id AND r.code = ANY(CAST(:codes AS text[])));

-- upsert_resources --
-- Insert new codes and update existing ones with the complete, checked values; parents are set by
-- set_parents once every row exists. Rows that would not change are not touched (nor returned).
INSERT INTO resource AS r (agent_id, code, name, level, path, requires_scheduling, timezone,
                           holiday_calendar, metadata)
SELECT :agent_id, c.code, c.name, c.level, c.code, c.requires_scheduling, c.timezone,
       c.holiday_calendar, CAST(c.metadata AS jsonb)
  FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:levels AS text[]),
              CAST(:requires_scheduling AS boolean[]), CAST(:timezones AS text[]),
              CAST(:calendars AS text[]), CAST(:metadata AS text[]))
       AS c(code, name, level, requires_scheduling, timezone, holiday_calendar, metadata)
ON CONFLICT (agent_id, code) DO UPDATE
   SET name = EXCLUDED.name, level = EXCLUDED.level, requires_scheduling = EXCLUDED.requires_scheduling,
       timezone = EXCLUDED.timezone, holiday_calendar = EXCLUDED.holiday_calendar,
       metadata = EXCLUDED.metadata, updated_at = now()
 WHERE (r.name, r.level, r.requires_scheduling, r.timezone, r.holiday_calendar, r.metadata)
       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.level, EXCLUDED.requires_scheduling, EXCLUDED.timezone,
                         EXCLUDED.holiday_calendar, EXCLUDED.metadata)
RETURNING r.code, (r.xmax = 0) AS created;

-- set_parents --
-- Point each listed code at its parent's code (NULL: a root). Returns the codes whose parent changed.
UPDATE resource r
   SET parent_id = p.id, updated_at = now()
  FROM unnest(CAST(:codes AS text[]), CAST(:parents AS text[])) AS c(code, parent)
  LEFT JOIN resource p ON p.agent_id = :agent_id AND p.code = c.parent
 WHERE r.agent_id = :agent_id AND r.code = c.code AND r.parent_id IS DISTINCT FROM p.id
RETURNING r.code;

-- refresh_paths --
-- Recompute every path of the plant from its roots (codes joined by '/'); only changed rows are
-- written. The tree was checked for cycles before any write.
WITH RECURSIVE tree AS (
    SELECT id, CAST(code AS text) AS path FROM resource WHERE agent_id = :agent_id AND parent_id IS NULL
    UNION ALL
    SELECT r.id, t.path || '/' || r.code
      FROM resource r JOIN tree t ON r.parent_id = t.id
     WHERE r.agent_id = :agent_id)
UPDATE resource r SET path = tree.path
  FROM tree
 WHERE r.id = tree.id AND r.path IS DISTINCT FROM tree.path;

-- update_resource --
-- Change the editable fields of one resource (NULL arguments keep the stored value, except where
-- the clear_* flag asks to empty an inherited field).
UPDATE resource
   SET name = coalesce(CAST(:name AS text), name),
       requires_scheduling = coalesce(CAST(:requires_scheduling AS boolean), requires_scheduling),
       timezone = CASE WHEN :clear_timezone THEN NULL ELSE coalesce(CAST(:timezone AS text), timezone) END,
       holiday_calendar = CASE WHEN :clear_calendar THEN NULL
                               ELSE coalesce(CAST(:holiday_calendar AS text), holiday_calendar) END,
       metadata = coalesce(CAST(:metadata AS jsonb), metadata),
       updated_at = now()
 WHERE id = :id
RETURNING *;

-- child_count --
SELECT count(*) FROM resource WHERE parent_id = :id;

-- delete_resource_rows --
-- A resource's generated availability goes with it (availability has no foreign key; see 0004).
DELETE FROM availability WHERE resource_id = :id;

-- delete_resource --
-- Its assignments and exceptions go by ON DELETE CASCADE.
DELETE FROM resource WHERE id = :id RETURNING id;

-- patterns_of_agent --
SELECT * FROM operating_pattern
 WHERE (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
 ORDER BY name, agent_id;

-- get_pattern --
SELECT * FROM operating_pattern WHERE agent_id = :agent_id AND name = :name;

-- upsert_pattern --
INSERT INTO operating_pattern AS p (agent_id, name, definition)
VALUES (:agent_id, :name, CAST(:definition AS jsonb))
ON CONFLICT (agent_id, name) DO UPDATE
   SET definition = EXCLUDED.definition, updated_at = now()
 WHERE p.definition IS DISTINCT FROM EXCLUDED.definition
RETURNING *, (xmax = 0) AS created;

-- pattern_use --
-- How many assignments name the pattern (a pattern in use cannot be deleted).
SELECT count(*) FROM pattern_assignment WHERE agent_id = :agent_id AND pattern = :name;

-- delete_pattern --
DELETE FROM operating_pattern WHERE agent_id = :agent_id AND name = :name RETURNING id;

-- calendars_of_agent --
SELECT * FROM holiday_calendar
 WHERE (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
 ORDER BY name, agent_id;

-- get_calendar --
SELECT * FROM holiday_calendar WHERE agent_id = :agent_id AND name = :name;

-- upsert_calendar --
INSERT INTO holiday_calendar AS h (agent_id, name, definition)
VALUES (:agent_id, :name, CAST(:definition AS jsonb))
ON CONFLICT (agent_id, name) DO UPDATE
   SET definition = EXCLUDED.definition, updated_at = now()
 WHERE h.definition IS DISTINCT FROM EXCLUDED.definition
RETURNING *, (xmax = 0) AS created;

-- calendar_use --
-- The codes of the resources a calendar is attached to (it cannot be deleted while attached).
SELECT code FROM resource WHERE agent_id = :agent_id AND holiday_calendar = :name ORDER BY path LIMIT 20;

-- delete_calendar --
DELETE FROM holiday_calendar WHERE agent_id = :agent_id AND name = :name RETURNING id;

-- assignments_of_agent --
-- An agent's assignments (every agent's for admins), optionally one resource's, in resource then
-- date order.
SELECT a.*, r.code AS resource_code
  FROM pattern_assignment a
  JOIN resource r ON r.id = a.resource_id
 WHERE (CAST(:owner AS uuid) IS NULL OR a.agent_id = :owner)
   AND (CAST(:resource_id AS uuid) IS NULL OR a.resource_id = :resource_id)
 ORDER BY r.path, a.effective_from;

-- upsert_assignment --
-- One assignment per resource and start date: assigning again from the same date replaces it.
INSERT INTO pattern_assignment AS a (agent_id, resource_id, pattern, effective_from, effective_to, anchor)
SELECT :agent_id, c.resource_id, c.pattern, c.effective_from, c.effective_to, c.anchor
  FROM unnest(CAST(:resource_ids AS uuid[]), CAST(:patterns AS text[]), CAST(:froms AS date[]),
              CAST(:tos AS date[]), CAST(:anchors AS date[]))
       AS c(resource_id, pattern, effective_from, effective_to, anchor)
ON CONFLICT (resource_id, effective_from) DO UPDATE
   SET pattern = EXCLUDED.pattern, effective_to = EXCLUDED.effective_to, anchor = EXCLUDED.anchor,
       created_at = now()
 WHERE (a.pattern, a.effective_to, a.anchor)
       IS DISTINCT FROM (EXCLUDED.pattern, EXCLUDED.effective_to, EXCLUDED.anchor)
RETURNING a.*, (a.xmax = 0) AS created;

-- get_assignment --
SELECT a.*, r.code AS resource_code
  FROM pattern_assignment a JOIN resource r ON r.id = a.resource_id
 WHERE a.id = :id AND (CAST(:owner AS uuid) IS NULL OR a.agent_id = :owner);

-- delete_assignment --
DELETE FROM pattern_assignment
 WHERE id = :id AND (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
RETURNING id;

-- exceptions_of_agent --
SELECT e.*, r.code AS resource_code
  FROM availability_exception e
  JOIN resource r ON r.id = e.resource_id
 WHERE (CAST(:owner AS uuid) IS NULL OR e.agent_id = :owner)
   AND (CAST(:resource_id AS uuid) IS NULL OR e.resource_id = :resource_id)
 ORDER BY r.path, e.starts_at, e.id;

-- upsert_exceptions --
-- The same exception listed again (resource, kind, start, rule) is updated, not added twice.
INSERT INTO availability_exception AS e (agent_id, resource_id, kind, impact, capacity_pct, starts_at,
                                         ends_at, rrule, description)
SELECT :agent_id, c.resource_id, c.kind, c.impact, c.capacity_pct, c.starts_at, c.ends_at, c.rrule,
       c.description
  FROM unnest(CAST(:resource_ids AS uuid[]), CAST(:kinds AS text[]), CAST(:impacts AS text[]),
              CAST(:capacities AS smallint[]), CAST(:starts AS timestamptz[]),
              CAST(:ends AS timestamptz[]), CAST(:rrules AS text[]), CAST(:descriptions AS text[]))
       AS c(resource_id, kind, impact, capacity_pct, starts_at, ends_at, rrule, description)
ON CONFLICT (resource_id, kind, starts_at, coalesce(rrule, '')) DO UPDATE
   SET impact = EXCLUDED.impact, capacity_pct = EXCLUDED.capacity_pct, ends_at = EXCLUDED.ends_at,
       description = EXCLUDED.description
 WHERE (e.impact, e.capacity_pct, e.ends_at, e.description)
       IS DISTINCT FROM (EXCLUDED.impact, EXCLUDED.capacity_pct, EXCLUDED.ends_at, EXCLUDED.description)
RETURNING e.*, (e.xmax = 0) AS created;

-- get_exception --
SELECT e.*, r.code AS resource_code
  FROM availability_exception e JOIN resource r ON r.id = e.resource_id
 WHERE e.id = :id AND (CAST(:owner AS uuid) IS NULL OR e.agent_id = :owner);

-- delete_exception --
DELETE FROM availability_exception
 WHERE id = :id AND (CAST(:owner AS uuid) IS NULL OR agent_id = :owner)
RETURNING id;

-- assignment_by_key --
SELECT a.*, r.code AS resource_code
  FROM pattern_assignment a JOIN resource r ON r.id = a.resource_id
 WHERE a.agent_id = :agent_id AND r.code = :code AND a.effective_from = :effective_from;

-- exception_by_key --
SELECT e.*, r.code AS resource_code
  FROM availability_exception e JOIN resource r ON r.id = e.resource_id
 WHERE e.agent_id = :agent_id AND r.code = :code AND e.kind = :kind AND e.starts_at = :starts_at
   AND coalesce(e.rrule, '') = coalesce(CAST(:rrule AS text), '');

-- resource_tree --
-- The tree of a plant, lean: what inheritance and subtree questions need.
SELECT id, agent_id, code, name, level, parent_id, path, requires_scheduling, timezone, holiday_calendar
  FROM resource
 WHERE agent_id = :agent_id;

-- generate_task_lock --
-- Two first POST /schedules/generate of one agent must not both create its generate task.
SELECT pg_advisory_xact_lock(7420041, hashtext(CAST(:agent_id AS text)));

-- get_generate_task --
SELECT t.id, t.status
  FROM plant_generate_task g JOIN task t ON t.id = g.task_id
 WHERE g.agent_id = :agent_id;

-- set_generate_task --
INSERT INTO plant_generate_task (agent_id, task_id) VALUES (:agent_id, :task_id)
ON CONFLICT (agent_id) DO UPDATE SET task_id = EXCLUDED.task_id;
