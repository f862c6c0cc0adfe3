-- A concurrency key is its owner's (workers/queries.sql keys_ready, lock_key, lease_keyed): two agents
-- that pick the same name each get their own limit, and neither can hold back the other's runs by
-- keeping one of its own busy under that name. The keyed indexes carry the owner after the key.
DROP INDEX due_work_ready_keyed_idx;
CREATE INDEX due_work_ready_keyed_idx ON due_work (concurrency_key, agent_id, priority, run_at, id)
    WHERE state IN ('queued', 'failed') AND concurrency_key IS NOT NULL;
COMMENT ON INDEX due_work_ready_keyed_idx IS
    'workers/queries.sql keys_ready and lease_keyed: due work under an owner''s concurrency key.';

DROP INDEX due_work_running_key_idx;
CREATE INDEX due_work_running_key_idx ON due_work (concurrency_key, agent_id)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
COMMENT ON INDEX due_work_running_key_idx IS
    'workers/queries.sql lease_keyed: running runs per owner''s concurrency key.';
