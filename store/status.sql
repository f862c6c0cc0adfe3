-- The state of the moving parts, for /health/ready, /metrics (system gauges) and GET /status.
-- "Due now" has one definition, the function ordo_due_runs (migrations/0006_ops.sql), which the KEDA
-- trigger uses too.

-- system --
-- The whole system in one round trip, cheap on a large queue: per-priority index probes for the due
-- runs (ordo_due_runs), the partial lease index for the running ones, and the worker and leader rows.
-- A worker is alive while its heartbeat is fresh; lost when it went quiet in the last hour without a
-- clean stop (its row still says running). Webhook endpoints are counted by state.
WITH due AS (SELECT * FROM ordo_due_runs(now())),
     -- Endpoints by state: one row per agent's endpoint, a small table.
     webhook_endpoint_counts AS (SELECT state, count(*) AS n FROM webhook_endpoint GROUP BY state)
SELECT (SELECT array_agg(priority ORDER BY priority) FROM due) AS due_priorities,
       (SELECT array_agg(runs ORDER BY priority) FROM due) AS due_runs,
       (SELECT array_agg(extract(epoch FROM now() - oldest_run_at) ORDER BY priority) FROM due) AS due_lag_s,
       (SELECT count(*) FROM due_work WHERE state = 'running') AS leased,
       (SELECT scheduler_id FROM scheduler_leader) AS leader_id,
       (SELECT since FROM scheduler_leader) AS leader_since,
       (SELECT heartbeat_at FROM scheduler_leader) AS leader_heartbeat_at,
       (SELECT extract(epoch FROM now() - heartbeat_at) FROM scheduler_leader) AS leader_age_s,
       (SELECT count(*) FROM worker
         WHERE state = 'running' AND heartbeat_at > now() - make_interval(secs => :worker_fresh_s)) AS workers_alive,
       (SELECT coalesce(sum(concurrency), 0) FROM worker
         WHERE state = 'running' AND heartbeat_at > now() - make_interval(secs => :worker_fresh_s)) AS worker_slots,
       (SELECT count(*) FROM worker
         WHERE state IN ('running', 'stopping')
           AND heartbeat_at <= now() - make_interval(secs => :worker_fresh_s)
           AND heartbeat_at > now() - interval '1 hour') AS workers_lost,
       (SELECT extract(epoch FROM now() - max(heartbeat_at)) FROM worker WHERE state = 'running') AS worker_age_s,
       -- Background loops (heartbeat, rescuer, listener, completer) that workers heard from recently
       -- report as failing or stalled, e.g. "host:12:ab3f listener: OperationalError: ...".
       (SELECT string_agg(w.id || ' ' || l.key || ': ' || coalesce(l.value ->> 'error', 'failing'), '; '
                          ORDER BY w.id, l.key)
          FROM worker w CROSS JOIN LATERAL jsonb_each(w.loops) AS l
         WHERE w.state = 'running' AND w.heartbeat_at > now() - make_interval(secs => :worker_fresh_s)
           AND NOT coalesce(CAST(l.value ->> 'ok' AS boolean), false)) AS failing_loops,
       (SELECT array_agg(state ORDER BY state) FROM webhook_endpoint_counts) AS webhook_states,
       (SELECT array_agg(n ORDER BY state) FROM webhook_endpoint_counts) AS webhook_endpoints,
       now() AS db_now;

-- webhook_breakers_open --
-- Endpoints whose circuit breaker is open, for GET /status (ids only: a URL can carry credentials).
SELECT id FROM webhook_endpoint WHERE state = 'breaker_open' ORDER BY id LIMIT 100;

-- runs_last_hour --
-- Attempts finished in the last hour by outcome (task_run_finished_idx).
SELECT state, count(*) AS n
  FROM task_run
 WHERE finished_at > now() - interval '1 hour'
 GROUP BY state;

-- workers --
-- Worker processes heard from in the last hour, with the runs each holds a lease on now.
SELECT w.id, w.hostname, w.pid, w.concurrency, w.state, w.started_at, w.heartbeat_at,
       extract(epoch FROM now() - w.heartbeat_at) AS last_seen_s,
       coalesce(b.busy, 0) AS busy
  FROM worker w
  LEFT JOIN (SELECT worker_id, count(*) AS busy
               FROM due_work
              WHERE state = 'running'
              GROUP BY worker_id) AS b ON b.worker_id = w.id
 WHERE w.heartbeat_at > now() - interval '1 hour'
 ORDER BY w.hostname, w.pid, w.id
 LIMIT 1000;

-- prune_workers --
-- Rows of workers that stopped (or went quiet) before the cutoff: the table gains a row per worker
-- process ever started, and the statements above read it on every scrape.
DELETE FROM worker WHERE heartbeat_at < :cutoff;

-- ping --
-- Readiness of workers and schedulers: the database answers.
SELECT 1;
