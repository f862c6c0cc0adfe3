-- Per-agent rate limits shared by API processes (api/ratelimit.py): GCRA over one timestamp per agent.
-- An agent may send a whole minute's allowance at once, then one request every :interval_s. Its
-- theoretical arrival time (tat) is how far its allowance is spent: `available` requests may be
-- made now when tat - now() <= tolerance - (available - 1) x interval. All times on the database's
-- clock, so every process on every host measures the same minute.

-- claim --
-- First give back :give_back requests the process took earlier and did not use, then take up to
-- :want requests of the agent's allowance, but never more than a quarter of what is available (at
-- least one), so that grants shrink as the allowance runs out and little of it lies idle in other
-- processes. The row lock of ON CONFLICT serialises concurrent claims for one agent; the new row of a
-- first claim starts from a full allowance. Returns the grant (0: refused) and, when refused, the
-- seconds until one request is available again.
INSERT INTO api_rate_limit AS r (agent_id, tat, granted)
SELECT :agent_id, now() + make_interval(secs => g * :interval_s), g
  FROM (SELECT least(:want, greatest(1, floor(:tolerance_s / :interval_s + 1.000001)::int / 4)) AS g) s
ON CONFLICT (agent_id) DO UPDATE
   SET (tat, granted) = (
       SELECT a.start + make_interval(secs => c.g * :interval_s), c.g
         FROM (SELECT greatest(r.tat - make_interval(secs => :give_back * :interval_s), now()) AS start) a
        CROSS JOIN LATERAL (
              SELECT floor((:tolerance_s - extract(epoch FROM a.start - now())) / :interval_s + 1.000001)::int
                     AS available) b
        CROSS JOIN LATERAL (
              SELECT CASE WHEN b.available < 1 THEN 0 ELSE least(:want, greatest(1, b.available / 4)) END
                     AS g) c)
RETURNING granted, greatest(0, extract(epoch FROM tat - now()) - :tolerance_s) AS retry_after_s;

-- give_back --
-- Requests processes took and did not use within their grant's life: the allowance gets them back.
UPDATE api_rate_limit r
   SET tat = r.tat - make_interval(secs => b.n * :interval_s)
  FROM unnest(CAST(:agent_ids AS uuid[]), CAST(:counts AS integer[])) AS b(agent_id, n)
 WHERE r.agent_id = b.agent_id;
