-- The audit log: one row per write made through the API (who, what, when, on what).

-- record --
-- Written in the same transaction as the change it describes: no change without its record.
INSERT INTO audit_log (agent_id, token_id, action, target_type, target_id, details)
VALUES (:agent_id, :token_id, :action, :target_type, :target_id, CAST(:details AS jsonb))
RETURNING id;

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
