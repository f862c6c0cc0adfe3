-- Webhook delivery leasing: claim breaker probes, lease due deliveries, record attempts (fenced by
-- lease_token, as in queries.sql), rescue expired leases, hand back at shutdown. The only statements
-- that take or change a delivery being sent.

-- claim_probes --
-- Open breakers whose cool-down is over and that have no probe in flight: each gets one probe now,
-- which holds its turn for :lease_s (a probe whose worker died is replaced after that). SKIP LOCKED:
-- two workers never probe the same endpoint (webhook_endpoint_breaker_idx).
UPDATE webhook_endpoint e
   SET breaker_probe_until = now() + make_interval(secs => :lease_s)
 WHERE e.id IN (SELECT id
                  FROM webhook_endpoint
                 WHERE state = 'breaker_open' AND breaker_probe_at <= now()
                   AND (breaker_probe_until IS NULL OR breaker_probe_until < now())
                 ORDER BY breaker_probe_at
                 LIMIT :n
                   FOR NO KEY UPDATE SKIP LOCKED)
RETURNING e.id;

-- lease_deliveries --
-- Lease up to :n due deliveries of active endpoints, earliest first (webhook_delivery_ready_idx), plus
-- the earliest waiting delivery of each endpoint in :probes (its half-open probe, due or not). Paused
-- and open endpoints' deliveries are held: not leased, no attempt spent. `attempts` becomes the number
-- of the attempt about to be made. Returns what signing and sending need.
WITH ready AS (
    SELECT d.id, false AS probe
      FROM webhook_delivery d
      JOIN webhook_endpoint e ON e.id = d.endpoint_id
     WHERE d.state IN ('pending', 'failed') AND d.next_attempt_at <= now() AND e.state = 'active'
     ORDER BY d.next_attempt_at, d.id
     LIMIT :n
       FOR UPDATE OF d SKIP LOCKED),
probe AS (
    SELECT p.id, true AS probe
      FROM unnest(CAST(:probes AS uuid[])) AS pe(endpoint_id)
     CROSS JOIN LATERAL (
           SELECT d.id
             FROM webhook_delivery d
            WHERE d.endpoint_id = pe.endpoint_id AND d.state IN ('pending', 'failed')
            ORDER BY d.next_attempt_at, d.id
            LIMIT 1
              FOR UPDATE SKIP LOCKED) AS p),
picked AS (
    SELECT * FROM ready
    UNION ALL
    SELECT * FROM probe)
UPDATE webhook_delivery d
   SET state = 'delivering',
       attempts = d.attempts + 1,
       round_attempts = d.round_attempts + 1,
       lease_token = gen_random_uuid(),
       lease_until = now() + make_interval(secs => :lease_s),
       worker_id = :worker_id,
       updated_at = now()
  FROM picked, webhook_message m, webhook_endpoint e
 WHERE d.id = picked.id AND m.id = d.message_id AND e.id = d.endpoint_id
RETURNING d.id, d.lease_token, d.attempts, d.round_attempts, picked.probe, d.endpoint_id, d.message_id,
          m.type, m.data, m.created_at AS message_created_at, e.url, e.secret,
          CASE WHEN e.previous_until > now() THEN e.previous_secret END AS previous_secret,
          e.state = 'active' AND e.consecutive_failures = 0 AS endpoint_healthy, now() AS started_at;

-- next_due_at --
-- When the earliest held-back delivery of an active endpoint, or the next probe, becomes due, so an
-- idle worker sleeps exactly until then.
SELECT least(
    (SELECT min(d.next_attempt_at)
       FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id
      WHERE d.state IN ('pending', 'failed') AND e.state = 'active'),
    (SELECT min(greatest(breaker_probe_at, coalesce(breaker_probe_until, breaker_probe_at)))
       FROM webhook_endpoint WHERE state = 'breaker_open')
) AS next_at, now() AS db_now;

-- record_attempts --
-- Record finished attempts: the delivery's new state (fenced: only while still leased under the same
-- token, so an attempt a rescuer took back cannot overwrite what came after) and one webhook_attempt
-- row per delivery that changed. The batch arrives as one JSON array.
WITH a AS (
    SELECT *
      FROM jsonb_to_recordset(CAST(:batch AS jsonb))
           AS a(id bigint, token uuid, outcome text, delay_s double precision, status integer,
                latency_ms double precision, excerpt text, error jsonb, started_at timestamptz)),
changed AS (
    UPDATE webhook_delivery d
       SET state = a.outcome,
           lease_token = NULL,
           lease_until = NULL,
           next_attempt_at = CASE WHEN a.outcome = 'failed'
                                  THEN now() + make_interval(secs => a.delay_s)
                                  ELSE d.next_attempt_at END,
           last_status = a.status,
           last_error = a.error,
           updated_at = now()
      FROM a
     WHERE d.id = ANY(CAST(:ids AS bigint[]))  -- a primary-key probe whatever the statistics say
       AND d.id = a.id AND d.lease_token = a.token AND d.state = 'delivering'
    RETURNING d.id, d.attempts, d.worker_id)
INSERT INTO webhook_attempt (delivery_id, attempt, worker_id, started_at, latency_ms, status_code,
                             response_excerpt, error, outcome)
SELECT c.id, c.attempts, c.worker_id, a.started_at, a.latency_ms, a.status, a.excerpt, a.error, a.outcome
  FROM changed c
  JOIN a ON a.id = c.id
RETURNING delivery_id;

-- breakers --
-- The breakers of the endpoints a batch of attempts concerns. FOR NO KEY UPDATE: the recording
-- transaction changes them; deliveries being queued for the same endpoints (their foreign-key checks
-- take KEY SHARE) do not wait for it.
SELECT id, state, paused_reason, consecutive_failures, breaker_trips, breaker_opened_at, breaker_probe_at,
       now() AS db_now
  FROM webhook_endpoint
 WHERE id = ANY(CAST(:ids AS uuid[]))
 ORDER BY id  -- one lock order for every worker
   FOR NO KEY UPDATE;

-- update_breakers --
-- Write breakers changed by a batch of attempts. A finished probe gives its turn back.
UPDATE webhook_endpoint e
   SET state = b.state,
       paused_reason = b.paused_reason,
       consecutive_failures = b.consecutive_failures,
       breaker_trips = b.trips,
       breaker_opened_at = b.opened_at,
       breaker_probe_at = b.probe_at,
       breaker_probe_until = CASE WHEN b.probe_done OR b.state <> 'breaker_open' THEN NULL
                                  ELSE e.breaker_probe_until END,
       updated_at = now()
  FROM jsonb_to_recordset(CAST(:batch AS jsonb))
       AS b(id uuid, state text, paused_reason text, consecutive_failures integer, trips integer,
            opened_at timestamptz, probe_at timestamptz, probe_done boolean)
 WHERE e.id = b.id;

-- expired_deliveries --
-- Leases whose worker died or hung past the lease, oldest expiry first, locked for the rescuing
-- transaction, which records each abandoned attempt with record_attempts (webhook_delivery_lease_idx).
SELECT id, lease_token, round_attempts, endpoint_id, updated_at AS started_at,
       extract(epoch FROM now() - updated_at) * 1000 AS latency_ms
  FROM webhook_delivery
 WHERE state = 'delivering' AND lease_until < now()
 ORDER BY lease_until
 LIMIT :n
   FOR UPDATE SKIP LOCKED;

-- expire_deliveries --
-- Shutdown after the grace period: end the leases of requests still in flight, so the next rescue (in
-- any worker) records the abandoned attempts and retries them.
UPDATE webhook_delivery d
   SET lease_until = now() - interval '1 millisecond'
  FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS uuid[])) AS l(id, token)
 WHERE d.id = ANY(CAST(:ids AS bigint[]))
   AND d.id = l.id AND d.lease_token = l.token AND d.state = 'delivering';

-- prune_messages --
-- Messages older than the retention whose every delivery ended (succeeded or dead), oldest first, in
-- batches (webhook_message_created_idx); their deliveries and attempts go with them (ON DELETE
-- CASCADE). SKIP LOCKED: workers pruning at once pass each other.
DELETE FROM webhook_message
 WHERE id IN (SELECT m.id
                FROM webhook_message m
               WHERE m.created_at < now() - make_interval(secs => :retention_s)
                 AND NOT EXISTS (SELECT 1
                                   FROM webhook_delivery d
                                  WHERE d.message_id = m.id AND d.state NOT IN ('succeeded', 'dead'))
               ORDER BY m.created_at
               LIMIT :n
                 FOR UPDATE SKIP LOCKED)
RETURNING id;
