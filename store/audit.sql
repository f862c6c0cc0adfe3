-- The audit log: one row per write made through the API (who, what, when, on what).

-- record --
-- Written in the same transaction as the change it describes: no change without its record.
INSERT INTO audit_log (agent_id, token_id, action, target_type, target_id, details)
VALUES (:audit_agent_id, :audit_token_id, :audit_action, :audit_target_type, :audit_target_id,
        CAST(:audit_details AS jsonb))
RETURNING id;

-- record_created --
-- The same entry written by the statement that creates its target (store.audit.audited joins it to
-- that statement as a CTE): one per row of the statement's CTE `created`, whose id is the target. It
-- costs no round trip of its own, and exists exactly when the row does: an insert that fails or
-- creates nothing writes no entry.
INSERT INTO audit_log (agent_id, token_id, action, target_type, target_id, details)
SELECT CAST(:audit_agent_id AS uuid), CAST(:audit_token_id AS uuid), CAST(:audit_action AS text),
       CAST(:audit_target_type AS text), CAST(created.id AS text), CAST(:audit_details AS jsonb)
  FROM created;

-- list_audit --
-- Newest first, keyset-paginated on id; audit_log_agent_idx / audit_log_target_idx when filtered.
SELECT *
  FROM audit_log
 WHERE (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   AND (CAST(:target_type AS text) IS NULL OR target_type = :target_type)
   AND (CAST(:target_id AS text) IS NULL OR target_id = :target_id)
   AND (CAST(:action AS text) IS NULL OR action = :action)
   AND (CAST(:before_id AS bigint) IS NULL OR id < :before_id)
 ORDER BY id DESC
 LIMIT :limit;
