-- Performance (issue #15): a per-agent API rate limit shared by every API process on every host.

-- One row per agent that has called the API: its theoretical arrival time (GCRA) on the database's
-- clock, moved by store/ratelimit.sql claim/give_back. UNLOGGED: no WAL for a value rewritten by
-- many requests a second, at the price of the limits starting afresh after a crash or on a promoted
-- replica (an agent may then send one extra minute's allowance), which a rate limit can afford.
-- `granted` is the size of the last grant, read back by the process that asked for it.
CREATE UNLOGGED TABLE api_rate_limit (
    agent_id uuid PRIMARY KEY,
    tat      timestamptz NOT NULL,
    granted  integer NOT NULL DEFAULT 0 CHECK (granted >= 0)
) WITH (fillfactor = 50);  -- room for HOT updates: the row is rewritten by each grant
