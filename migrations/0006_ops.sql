-- What operators watch: the one definition of "due now", shared by the queue gauges (/metrics), GET
-- /status and the KEDA trigger that scales workers; and the index behind "runs in the last hour".

-- Runs due now and waiting for a worker, per priority: queued or awaiting a retry, run_at reached, not
-- leased. Occurrences the scheduler wrote ahead (run_at in the future) and retries still backing off
-- are not due; running and finished runs are not waiting.
-- Cheap on a large queue: one index range scan per priority over due_work_ready_idx for unkeyed runs,
-- and one over due_work_due_keyed_idx for keyed runs; each reads the due entries only, never the
-- runs written ahead for the future.
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

-- ordo_due_runs: keyed runs by run_at, so the due ones are a range (due_work_ready_keyed_idx leads with
-- the key). Only keyed waiting runs have entries: unkeyed work pays nothing for it.
CREATE INDEX due_work_due_keyed_idx ON due_work (run_at) INCLUDE (priority)
    WHERE state IN ('queued', 'failed') AND concurrency_key IS NOT NULL;

COMMENT ON FUNCTION ordo_due_runs(timestamptz) IS
    'Runs due now and waiting for a worker, per priority (store/status.sql system, ops/k8s/keda.yaml).';

-- store.status overview: attempts finished in the last hour, by outcome. A range scan of the newest
-- entries; without it the count reads the whole history.
CREATE INDEX task_run_finished_idx ON task_run (finished_at);
