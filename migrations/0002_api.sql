-- The HTTP API's tables: bearer tokens (stored only as hashes), the audit log of every write, and
-- idempotency keys that make retried POSTs safe.

-- A token is `ordo_<public_id>_<secret>`. Only the SHA-256 of the whole token is stored; public_id
-- finds the row, the hash is compared in constant time by the API. Revoked tokens stay for the trail.
CREATE TABLE api_token (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id     uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    public_id    text NOT NULL CHECK (public_id ~ '^[a-z2-7]{12}$'),
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes       text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scopes) <= 64),
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    created_by   uuid REFERENCES agent (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    -- Touched at most once a minute per token, so a busy token does not write on every request.
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- store.agents.authenticate: the token row behind a presented token.
CREATE UNIQUE INDEX api_token_public_id_uq ON api_token (public_id);
-- store.agents.list_tokens / revoke_agent_tokens: an agent's tokens.
CREATE INDEX api_token_agent_idx ON api_token (agent_id, created_at);

-- Who changed what, when. Append-only; no foreign keys so the trail outlives what it describes.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    agent_id    uuid NOT NULL,
    token_id    uuid,
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type text NOT NULL,
    target_id   text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object')
);

-- store.audit.list_page filtered by agent, newest first.
CREATE INDEX audit_log_agent_idx ON audit_log (agent_id, id DESC);
-- store.audit.list_page filtered by target (a task's history), newest first.
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id DESC);

-- One row per (agent, Idempotency-Key). The row is inserted before the write it guards, in the same
-- transaction, and carries the response that write produced: a concurrent duplicate blocks on the
-- primary key until the first commits, then replays its response; if the first rolls back, nothing
-- is left behind and the duplicate proceeds as the first.
CREATE TABLE idempotency_key (
    agent_id    uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation   text NOT NULL,
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),
    status      smallint,
    response    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, key)
);

-- store.idempotency.prune: keys past their retention, oldest first.
CREATE INDEX idempotency_key_created_idx ON idempotency_key (created_at);

-- store.events.list_page filtered by agent, newest first.
CREATE INDEX event_agent_idx ON event (agent_id, created_at DESC, id DESC);
