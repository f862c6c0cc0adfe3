-- Idempotency keys: a retried POST with the same key replays the first response.

-- claim --
-- Take the key for this request, in the transaction that makes the write it guards. Returns a row
-- when this transaction now owns the key (new, or an expired entry replaced) and nothing when a
-- live entry exists. A concurrent claim of the same key waits on the primary key until the owner
-- commits (then finds its entry) or rolls back (then owns the key).
INSERT INTO idempotency_key (agent_id, key, operation, fingerprint)
VALUES (:agent_id, :key, :operation, :fingerprint)
ON CONFLICT (agent_id, key) DO UPDATE
   SET operation = EXCLUDED.operation, fingerprint = EXCLUDED.fingerprint,
       status = NULL, response = NULL, created_at = now()
 WHERE idempotency_key.created_at < now() - make_interval(secs => :ttl_s)
RETURNING true AS owned;

-- get --
SELECT operation, fingerprint, status, response, created_at
  FROM idempotency_key
 WHERE agent_id = :agent_id AND key = :key;

-- save --
-- The response of the write the key guards, stored before the transaction commits.
UPDATE idempotency_key
   SET status = :status, response = CAST(:response AS jsonb)
 WHERE agent_id = :agent_id AND key = :key;

-- prune --
-- Retention: entries past their lifetime, oldest first (idempotency_key_created_idx), in batches.
WITH old AS (
    SELECT agent_id, key FROM idempotency_key
     WHERE created_at < now() - make_interval(secs => :ttl_s)
     ORDER BY created_at
     LIMIT :n)
DELETE FROM idempotency_key k USING old
 WHERE k.agent_id = old.agent_id AND k.key = old.key
RETURNING 1;
