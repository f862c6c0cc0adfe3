-- Events: published topics with a payload; every active task subscribed to the topic runs once.

-- publish --
-- Record the event and queue one run per subscribed active task (task_topic_idx), in one statement:
-- the publisher's own tasks, or every agent's when :agent_id is NULL (an admin publishing). The
-- due_work trigger NOTIFYs idle workers. The publisher's webhook endpoints subscribed to the topic
-- (webhook_endpoint_events_idx) get the event as a message whose webhook-id is the event's id; with
-- none, nothing is written for webhooks.
WITH subscribers AS (
    SELECT t.id, t.agent_id, t.priority, t.max_retries, t.concurrency_key, t.concurrency_limit
      FROM task t
     WHERE t.schedule_kind = 'event' AND t.status = 'active' AND t.schedule_expr = :topic
       AND (CAST(:agent_id AS uuid) IS NULL OR t.agent_id = :agent_id)),
ev AS (
    INSERT INTO event (agent_id, topic, payload, matched_tasks)
    SELECT :publisher_id, :topic, CAST(:payload AS jsonb), count(*) FROM subscribers
    RETURNING *),
runs AS (
    INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,
                          concurrency_key, concurrency_limit, event_id, agent_id)
    SELECT s.id, 'event', now(), now(), s.priority, s.max_retries + 1, s.concurrency_key,
           CASE WHEN s.concurrency_key IS NOT NULL THEN s.concurrency_limit END, ev.id, s.agent_id
      FROM subscribers s CROSS JOIN ev
    RETURNING id, task_id),
hooks AS (
    SELECT e.id
      FROM webhook_endpoint e
     WHERE e.agent_id = :publisher_id AND e.events @> ARRAY[CAST(:topic AS text)]),
message AS (
    INSERT INTO webhook_message (id, agent_id, type, data, created_at)
    SELECT ev.id, ev.agent_id, ev.topic, ev.payload, ev.created_at
      FROM ev
     WHERE EXISTS (SELECT 1 FROM hooks)
    RETURNING id),
deliveries AS (
    INSERT INTO webhook_delivery (message_id, endpoint_id)
    SELECT message.id, hooks.id FROM message CROSS JOIN hooks
    RETURNING id)
SELECT ev.*, coalesce((SELECT jsonb_agg(jsonb_build_object('run_id', r.id, 'task_id', r.task_id) ORDER BY r.id)
                         FROM runs r), '[]'::jsonb) AS runs,
       (SELECT count(*) FROM deliveries) AS webhook_deliveries
  FROM ev;

-- get_event --
SELECT * FROM event
 WHERE id = :id
   AND (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id);

-- event_runs --
-- The runs an event queued: pending ones in due_work, ended ones as their final task_run row.
SELECT id AS run_id, task_id FROM due_work WHERE event_id = :event_id
UNION ALL
SELECT run_id, task_id FROM task_run WHERE event_id = :event_id AND final
ORDER BY run_id;

-- list_events --
-- Newest first, keyset-paginated on (created_at, id): event_agent_idx for an agent, event_created_idx
-- for admins.
SELECT *
  FROM event
 WHERE (CAST(:agent_id AS uuid) IS NULL OR agent_id = :agent_id)
   AND (CAST(:topic AS text) IS NULL OR topic = :topic)
   AND (CAST(:after_created AS timestamptz) IS NULL
        OR (created_at, id) < (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
 ORDER BY created_at DESC, id DESC
 LIMIT :limit;
