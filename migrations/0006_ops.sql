-- What operators watch: the one definition of "due now", shared by the queue gauges (/metrics), GET
-- /status and the KEDA trigger that scales workers; and the index behind "runs in the last hour".

-- Runs due now and waiting for a worker, per priority: queued or awaiting a retry, run_at reached, not
-- leased. Occurrences the scheduler wrote ahead (run_at in the future) and retries still backing off
-- are not due; running and finished runs are not waiting.
-- Cheap on a large queue: the unkeyed part is one index-only range scan of due_work_ready_idx per
-- priority (count and oldest from the same probe), never a pass over the future rows; the keyed part
-- reads due_work_ready_keyed_idx, whose size is the keyed work waiting.
CREATE FUNCTION ordo_due_runs(as_of timestamptz DEFAULT now())
RETURNS TABLE (priority smallint, runs bigint, oldest_run_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT p.priority::smallint, u.runs, u.oldest_run_at
      FROM generate_series(1, 9) AS p(priority)
     CROSS JOIN LATERAL (
           SELECT count(*) AS runs, min(d.run_at) AS oldest_run_at
             FROM due_work d
            WHERE d.priority = p.priority
              AND d.state IN ('queued', 'failed')
              AND d.concurrency_key IS NULL
              AND d.run_at <= as_of) AS u
     WHERE u.runs > 0
    UNION ALL
    SELECT d.priority, count(*), min(d.run_at)
      FROM due_work d
     WHERE d.state IN ('queued', 'failed')
       AND d.concurrency_key IS NOT NULL
       AND d.run_at <= as_of
     GROUP BY d.priority
$$;

COMMENT ON FUNCTION ordo_due_runs(timestamptz) IS
    'Runs due now and waiting for a worker, per priority (store/status.sql queue_gauges, ops/k8s/keda.yaml).';

-- store.status overview: attempts finished in the last hour, by outcome. A range scan of the newest
-- entries; without it the count reads the whole history.
CREATE INDEX task_run_finished_idx ON task_run (finished_at);
