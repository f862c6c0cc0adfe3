-- Webhooks (Standard Webhooks v1): the endpoints an agent registers, the messages to announce, one
-- delivery per message and endpoint (the delivery queue, leased by workers like due_work), and every
-- attempt made. A message's id is the `webhook-id` header: the same on every attempt and redelivery.

CREATE TABLE webhook_endpoint (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id             uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    url                  text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    -- Exact topics; an event is delivered to the owner's endpoints that list its topic.
    events               text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 100),
    description          text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    -- active: deliveries flow; paused: by its owner, or by the receiver answering 410 Gone;
    -- breaker_open: too many consecutive failures, deliveries wait for the half-open probe.
    -- Deliveries of a paused or open endpoint are held, never dropped.
    state                text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'breaker_open')),
    paused_reason        text CHECK (paused_reason IN ('owner', 'gone')),
    -- `whsec_` + base64 of 24-64 random bytes. The HMAC key is needed to sign, so it is stored as is;
    -- the API returns it only at creation and rotation, and it is never logged.
    secret               text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    -- After a rotation the previous secret signs too, until previous_until (the overlap window).
    previous_secret      text CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    previous_until       timestamptz,
    -- The circuit breaker: failed attempts in a row (a success resets it), when it opened, how many
    -- times in a row it tripped (the cool-down doubles each time), when the next half-open probe may
    -- go, and until when the probe in flight holds its turn (NULL: none in flight).
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    breaker_opened_at    timestamptz,
    breaker_trips        integer NOT NULL DEFAULT 0 CHECK (breaker_trips >= 0),
    breaker_probe_at     timestamptz,
    breaker_probe_until  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'paused') = (paused_reason IS NOT NULL)),
    CHECK ((state = 'breaker_open') = (breaker_opened_at IS NOT NULL AND breaker_probe_at IS NOT NULL)),
    CHECK ((previous_secret IS NULL) = (previous_until IS NULL))
);

-- store.webhooks.list_page for an agent, newest first.
CREATE INDEX webhook_endpoint_agent_idx ON webhook_endpoint (agent_id, created_at DESC, id DESC);
-- store.webhooks list_page for admins, newest first.
CREATE INDEX webhook_endpoint_created_idx ON webhook_endpoint (created_at DESC, id DESC);
-- Subscribers of a topic (store/events.sql publish, store/webhooks.sql announce, and the "does anyone
-- listen at all" probe that keeps system events free when nobody subscribes).
CREATE INDEX webhook_endpoint_events_idx ON webhook_endpoint USING gin (events);
-- workers/deliveries.sql claim_probes: open breakers whose probe is due.
CREATE INDEX webhook_endpoint_breaker_idx ON webhook_endpoint (breaker_probe_at) WHERE state = 'breaker_open';

-- One thing to announce: an event an agent published, a system event about its runs or tasks, or a
-- webhook.notify step. The body sent is {"type", "timestamp" (created_at), "data"}.
CREATE TABLE webhook_message (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- webhook-id: msg_<32 hex digits>
    agent_id    uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type ~ '^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$'),
    data        jsonb NOT NULL,
    -- What made it, when that could happen twice: `run:<run id>:<step id>` for webhook.notify, so a
    -- run retried after its notify step enqueues nothing a second time.
    source_key  text UNIQUE CHECK (length(source_key) <= 300),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- workers/deliveries.sql prune_messages: the oldest messages first.
CREATE INDEX webhook_message_created_idx ON webhook_message (created_at);

-- One message to one endpoint: queue row and log entry at once. Leased like due_work (lease_token
-- fences every write after the lease), but never a task run: it shows in the endpoint's delivery log.
CREATE TABLE webhook_delivery (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      uuid NOT NULL REFERENCES webhook_message (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    -- pending: waiting for its first attempt; delivering: leased; failed: will be retried at
    -- next_attempt_at; succeeded; dead: no retries left (or not retryable) until redelivered.
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivering', 'succeeded', 'failed', 'dead')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),  -- every attempt, all rounds
    -- Attempts since the delivery was created or last redelivered: its place in the retry schedule.
    round_attempts  integer NOT NULL DEFAULT 0 CHECK (round_attempts >= 0 AND round_attempts <= attempts),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_token     uuid,
    lease_until     timestamptz,
    worker_id       text,
    last_status     integer,
    last_error      jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, endpoint_id),
    CHECK ((state = 'delivering') = (lease_token IS NOT NULL AND lease_until IS NOT NULL))
);

-- workers/deliveries.sql lease_deliveries: waiting deliveries, earliest first.
CREATE INDEX webhook_delivery_ready_idx ON webhook_delivery (next_attempt_at, id) WHERE state IN ('pending', 'failed');
-- workers/deliveries.sql expired_deliveries: leases by expiry.
CREATE INDEX webhook_delivery_lease_idx ON webhook_delivery (lease_until) WHERE state = 'delivering';
-- store.webhooks.deliveries: an endpoint's log, newest first (and ON DELETE CASCADE from the endpoint).
CREATE INDEX webhook_delivery_endpoint_idx ON webhook_delivery (endpoint_id, id DESC);
-- ON DELETE CASCADE from webhook_message, and the pruning of old messages.
CREATE INDEX webhook_delivery_message_idx ON webhook_delivery (message_id);

-- Every request made for a delivery (and every attempt a dead worker abandoned).
CREATE TABLE webhook_attempt (
    delivery_id      bigint NOT NULL REFERENCES webhook_delivery (id) ON DELETE CASCADE,
    attempt          integer NOT NULL CHECK (attempt >= 1),
    worker_id        text,
    started_at       timestamptz NOT NULL,
    latency_ms       double precision CHECK (latency_ms >= 0),
    status_code      integer CHECK (status_code BETWEEN 100 AND 599),
    response_excerpt text CHECK (length(response_excerpt) <= 1024),
    error            jsonb,
    -- succeeded, failed (will be retried) or dead: what this attempt made of the delivery.
    outcome          text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'dead')),
    PRIMARY KEY (delivery_id, attempt)
);

-- Wake idle workers when a delivery is due now (the same trigger as due_work's, on its own channel).
CREATE FUNCTION webhook_delivery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE next_attempt_at <= now()) THEN
        PERFORM pg_notify('ordo_webhooks', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_delivery_notify AFTER INSERT ON webhook_delivery
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION webhook_delivery_notify();
