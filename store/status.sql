-- Liveness of the moving parts, for /health/ready and /metrics.

-- liveness --
-- The scheduler leader's heartbeat age and the workers heard from recently. The worker table holds
-- one row per worker process ever started; it stays small enough to scan.
SELECT (SELECT scheduler_id FROM scheduler_leader) AS leader_id,
       (SELECT extract(epoch FROM now() - heartbeat_at) FROM scheduler_leader) AS leader_age_s,
       (SELECT count(*) FROM worker
         WHERE state = 'running' AND heartbeat_at > now() - make_interval(secs => :worker_fresh_s)) AS workers_fresh,
       (SELECT coalesce(sum(concurrency), 0) FROM worker
         WHERE state = 'running' AND heartbeat_at > now() - make_interval(secs => :worker_fresh_s)) AS worker_slots,
       (SELECT extract(epoch FROM now() - max(heartbeat_at)) FROM worker WHERE state = 'running') AS worker_age_s,
       -- Background loops (heartbeat, rescuer, listener, completer) that workers heard from recently
       -- report as failing or stalled, e.g. "host:12:ab3f listener: OperationalError: ...".
       (SELECT string_agg(w.id || ' ' || l.key || ': ' || coalesce(l.value ->> 'error', 'failing'), '; '
                          ORDER BY w.id, l.key)
          FROM worker w CROSS JOIN LATERAL jsonb_each(w.loops) AS l
         WHERE w.state = 'running' AND w.heartbeat_at > now() - make_interval(secs => :worker_fresh_s)
           AND NOT coalesce(CAST(l.value ->> 'ok' AS boolean), false)) AS failing_loops,
       now() AS db_now;

-- ping --
SELECT 1;
