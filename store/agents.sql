-- Agents and their API tokens. Tokens are stored as SHA-256 hashes; the secret is never stored.

-- insert_agent --
-- A new agent; NULL when the name is taken (the caller reports it).
INSERT INTO agent (name)
VALUES (:name)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- get_agent --
SELECT * FROM agent WHERE id = :id;

-- get_agent_by_name --
SELECT * FROM agent WHERE name = :name;

-- list_agents --
-- Oldest first, keyset-paginated on (created_at, id); agents are few, a scan is fine.
SELECT a.*, (SELECT count(*) FROM api_token t WHERE t.agent_id = a.id AND t.revoked_at IS NULL) AS active_tokens
  FROM agent a
 WHERE (CAST(:after_created AS timestamptz) IS NULL
        OR (a.created_at, a.id) > (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
 ORDER BY a.created_at, a.id
 LIMIT :limit;

-- disable_agent --
-- Soft delete: the agent keeps its tasks and history (tasks reference it) but can no longer sign in.
UPDATE agent SET disabled_at = coalesce(disabled_at, now()) WHERE id = :id RETURNING *;

-- active_task_ids --
-- A disabled agent's schedules stop: the caller pauses these through store.tasks.pause (one code path
-- for withdrawing queued occurrences). Ordered by id so concurrent callers lock in the same order.
SELECT id FROM task WHERE agent_id = :agent_id AND status = 'active' ORDER BY id;

-- insert_token --
INSERT INTO api_token (agent_id, public_id, secret_hash, scopes, name, created_by, expires_at)
VALUES (:agent_id, :public_id, :secret_hash, CAST(:scopes AS text[]), :name, :created_by, :expires_at)
RETURNING *;

-- token_for_auth --
-- Everything a request needs to know about its token, in one probe of api_token_public_id_uq.
SELECT t.id, t.agent_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at, t.last_used_at,
       a.name AS agent_name, a.disabled_at AS agent_disabled_at, now() AS db_now
  FROM api_token t
  JOIN agent a ON a.id = t.agent_id
 WHERE t.public_id = :public_id;

-- touch_token --
-- Record use at most once a minute per token: most requests write nothing.
UPDATE api_token
   SET last_used_at = now()
 WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds');

-- list_tokens --
SELECT * FROM api_token WHERE agent_id = :agent_id ORDER BY created_at, id;

-- tokens_with_agents --
-- Every token (or one agent's, by name) with its agent's name, oldest first, for `ordo token list`.
SELECT t.*, a.name AS agent_name
  FROM api_token t
  JOIN agent a ON a.id = t.agent_id
 WHERE (CAST(:agent_name AS text) IS NULL OR a.name = :agent_name)
 ORDER BY t.created_at, t.id
 LIMIT :limit;

-- find_token --
-- A token by its id or by its public part (`ordo_<public_id>`, as GET /agents/{id} shows it).
SELECT * FROM api_token WHERE id = CAST(:id AS uuid) OR public_id = :public_id;

-- revoke_token --
UPDATE api_token
   SET revoked_at = coalesce(revoked_at, now())
 WHERE id = :id AND agent_id = :agent_id
RETURNING *;

-- revoke_agent_tokens --
UPDATE api_token SET revoked_at = now() WHERE agent_id = :agent_id AND revoked_at IS NULL RETURNING id;

-- notify_auth_change --
-- Tell every API process that a token was revoked or an agent deleted, so that they drop the tokens
-- they verified earlier. Delivered when the transaction commits.
SELECT pg_notify('ordo_api_auth', CAST(:what AS text));

-- admin_token_exists --
-- Bootstrap: has an admin token ever been issued (revoked ones count: first start happens once)?
SELECT EXISTS (SELECT 1 FROM api_token WHERE 'admin' = ANY(scopes)) AS found;

-- bootstrap_lock --
-- Two `ordo up` starting together must not both create the first admin token.
SELECT pg_advisory_xact_lock(7420010);
