-- Webhook endpoints, what to announce to them, and their delivery log. Delivering (leasing, sending,
-- recording attempts) is workers/deliveries.sql.

-- create_endpoint --
INSERT INTO webhook_endpoint (agent_id, url, events, description, secret)
VALUES (:agent_id, :url, CAST(:events AS text[]), :description, :secret)
RETURNING *, now() AS db_now;

-- get_endpoint --
-- One endpoint, the caller's own unless :agent_id is NULL (admins).
SELECT *, now() AS db_now
  FROM webhook_endpoint
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id);

-- lock_endpoint --
SELECT *, now() AS db_now
  FROM webhook_endpoint
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   FOR UPDATE;

-- list_endpoints --
-- Newest first, keyset-paginated on (created_at, id): webhook_endpoint_agent_idx for an agent,
-- webhook_endpoint_created_idx for admins.
SELECT *, now() AS db_now
  FROM webhook_endpoint
 WHERE (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   AND (CAST(:after_created AS timestamptz) IS NULL
        OR (created_at, id) < (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
 ORDER BY created_at DESC, id DESC
 LIMIT :limit;

-- update_endpoint --
-- Change the fields given (NULL: keep). Setting the state starts the breaker afresh: pausing holds
-- every delivery, resuming (:state 'active') sends the held ones at once (the NOTIFY wakes workers).
WITH changed AS (
    UPDATE webhook_endpoint
       SET url = coalesce(CAST(:url AS text), url),
           events = coalesce(CAST(:events AS text[]), events),
           description = coalesce(CAST(:description AS text), description),
           state = coalesce(CAST(:state AS text), state),
           paused_reason = CASE CAST(:state AS text)
                               WHEN 'paused' THEN coalesce(paused_reason, 'owner')
                               WHEN 'active' THEN NULL
                               ELSE paused_reason END,
           consecutive_failures = CASE WHEN CAST(:state AS text) IS NULL THEN consecutive_failures ELSE 0 END,
           breaker_trips = CASE WHEN CAST(:state AS text) IS NULL THEN breaker_trips ELSE 0 END,
           breaker_opened_at = CASE WHEN CAST(:state AS text) IS NULL THEN breaker_opened_at END,
           breaker_probe_at = CASE WHEN CAST(:state AS text) IS NULL THEN breaker_probe_at END,
           breaker_probe_until = CASE WHEN CAST(:state AS text) IS NULL THEN breaker_probe_until END,
           updated_at = now()
     WHERE id = :id
    RETURNING *)
SELECT changed.*, now() AS db_now,
       CASE WHEN changed.state = 'active' THEN pg_notify('ordo_webhooks', '') END AS woken
  FROM changed;

-- rotate_secret --
-- A new secret signs from now on; the one it replaces signs too until :overlap_s from now, so
-- receivers can switch at their pace. A second rotation inside the window drops the oldest secret.
UPDATE webhook_endpoint
   SET previous_secret = CASE WHEN :overlap_s > 0 THEN secret END,
       previous_until = CASE WHEN :overlap_s > 0 THEN now() + make_interval(secs => :overlap_s) END,
       secret = :secret,
       updated_at = now()
 WHERE id = :id
RETURNING *, now() AS db_now;

-- delete_endpoint --
-- Its deliveries and their attempts go with it (ON DELETE CASCADE); a delivery in flight is fenced out.
DELETE FROM webhook_endpoint
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
RETURNING id;

-- announce --
-- Queue one message to the agent's endpoints subscribed to :type (webhook_endpoint_events_idx), or to
-- the one endpoint :endpoint_id. Writes nothing at all when no endpoint is concerned. A :source_key
-- seen before (a retried run's notify step) adds nothing. The delivery trigger NOTIFYs workers.
WITH target AS (
    SELECT e.id
      FROM webhook_endpoint e
     WHERE e.agent_id = :agent_id
       AND CASE WHEN CAST(:endpoint_id AS uuid) IS NULL THEN e.events @> ARRAY[CAST(:type AS text)]
                ELSE e.id = :endpoint_id END),
msg AS (
    INSERT INTO webhook_message (agent_id, type, data, source_key)
    SELECT :agent_id, :type, CAST(:data AS jsonb), :source_key
     WHERE EXISTS (SELECT 1 FROM target)
    ON CONFLICT (source_key) DO NOTHING
    RETURNING id),
queued AS (
    INSERT INTO webhook_delivery (message_id, endpoint_id)
    SELECT msg.id, target.id FROM msg CROSS JOIN target
    RETURNING id, endpoint_id, message_id)
SELECT id, endpoint_id, message_id FROM queued ORDER BY id;

-- deliveries_of_source --
-- The deliveries an earlier attempt of the same step queued (announce with a :source_key seen before).
SELECT d.id, d.endpoint_id, d.message_id
  FROM webhook_message m
  JOIN webhook_delivery d ON d.message_id = m.id
 WHERE m.source_key = :source_key AND m.agent_id = :agent_id
 ORDER BY d.id;

-- list_deliveries --
-- An endpoint's deliveries, newest first, each with every attempt (webhook_delivery_endpoint_idx; the
-- attempts by primary key), optionally in one state, keyset-paginated on id.
SELECT d.*, m.type, m.data, m.created_at AS message_created_at, now() AS db_now,
       coalesce((SELECT jsonb_agg(to_jsonb(a) - 'delivery_id' ORDER BY a.attempt)
                   FROM webhook_attempt a
                  WHERE a.delivery_id = d.id), '[]'::jsonb) AS attempt_log
  FROM webhook_delivery d
  JOIN webhook_message m ON m.id = d.message_id
 WHERE d.endpoint_id = :endpoint_id
   AND (CAST(:state AS text) IS NULL OR d.state = :state)
   AND (CAST(:before_id AS bigint) IS NULL OR d.id < :before_id)
   AND (CAST(:delivery_id AS bigint) IS NULL OR d.id = :delivery_id)
 ORDER BY d.id DESC
 LIMIT :limit;

-- redeliver --
-- Send a delivery again, now, with a fresh round of retries (a dead one, or a succeeded one whose
-- receiver lost it). The message, and so the webhook-id, stays the same; earlier attempts stay in
-- the log. A delivery waiting or in flight is left alone (the caller reports the conflict).
WITH again AS (
    UPDATE webhook_delivery
       SET state = 'pending', round_attempts = 0, next_attempt_at = now(), last_error = NULL,
           updated_at = now()
     WHERE id = :delivery_id AND endpoint_id = :endpoint_id AND state IN ('succeeded', 'dead')
    RETURNING id)
SELECT id, pg_notify('ordo_webhooks', '') AS woken FROM again;

-- delivery_state --
SELECT state FROM webhook_delivery WHERE id = :delivery_id AND endpoint_id = :endpoint_id;
